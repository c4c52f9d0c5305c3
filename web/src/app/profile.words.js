// The runner profile's words.
export const words = {
  en: {
    'profile.title': 'Runner profile',
    'profile.name': 'Name your friends see',
    'profile.maxhr': 'Maximum heart rate (bpm)',
    'profile.resthr': 'Resting heart rate (bpm)',
    'profile.save': 'Save profile',
    'profile.saved': 'Saved. New runs use these heart rates for their zones.',
    'profile.refused': 'Not saved: {reason}',
    'profile.zones.profile': 'Zones use your maximum of {max} bpm.',
    'profile.zones.history': 'Zones use {max} bpm, the highest your runs show.',
    'profile.zones.default': 'Zones use {max} bpm until you set yours or your runs show it.',
  },
  ko: {
    'profile.title': '러너 프로필',
    'profile.name': '친구에게 보이는 이름',
    'profile.maxhr': '최대 심박수 (bpm)',
    'profile.resthr': '안정 시 심박수 (bpm)',
    'profile.save': '프로필 저장',
    'profile.saved': '저장했습니다. 새 러닝부터 이 심박수로 구간을 계산합니다.',
    'profile.refused': '저장하지 못했습니다: {reason}',
    'profile.zones.profile': '최대 심박수 {max} bpm 기준으로 구간을 계산합니다.',
    'profile.zones.history': '기록에서 가장 높은 {max} bpm 기준으로 구간을 계산합니다.',
    'profile.zones.default': '직접 입력하거나 기록이 쌓일 때까지 {max} bpm 기준으로 계산합니다.',
  },
};
