// The account page's words.
export const words = {
  en: {
    'account.title': 'My account',
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
