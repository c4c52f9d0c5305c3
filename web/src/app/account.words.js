// The account page's words.
export const words = {
  en: {
    'account.title': 'My account',
    'account.identity.done': 'Identity checked on {at}.',
    'account.identity.none': 'Identity not checked yet. Some memberships need it: check it at the counter or when you join online.',
    'account.memberships': 'Memberships',
    'account.allbranches': 'All branches',
    'account.until': 'until {date}',
    'account.needsidentity': 'This membership needs an identity check before you can enter.',
    'account.status.active': 'active',
    'account.status.paused': 'paused',
    'account.status.expired': 'expired',
    'account.status.blocked': 'blocked',
  },
  ko: {
    'account.title': '내 계정',
    'account.identity.done': '{at}에 본인 확인을 마쳤습니다.',
    'account.identity.none': '아직 본인 확인을 하지 않았습니다. 일부 회원권은 본인 확인이 필요합니다. 카운터나 온라인 가입 시 확인하세요.',
    'account.memberships': '회원권',
    'account.allbranches': '전 지점',
    'account.until': '{date}까지',
    'account.needsidentity': '이 회원권은 입장 전에 본인 확인이 필요합니다.',
    'account.status.active': '이용 중',
    'account.status.paused': '일시 정지',
    'account.status.expired': '만료',
    'account.status.blocked': '정지됨',
  },
};
