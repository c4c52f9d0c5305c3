// The inbox's words.
export const words = {
  en: {
    'inbox.title': 'Inbox',
    'inbox.empty': 'No messages.',
    'inbox.unread': '{n} unread',
    'inbox.readall': 'Mark all read',
    'inbox.push': 'Notifications on this phone',
    'inbox.push.browser': 'In the browser, messages arrive here. Install the SmartGym app to get them as notifications.',
    'inbox.push.on': 'Notifications are on for this phone.',
    'inbox.push.off': 'Notifications are off for this phone.',
    'inbox.push.enable': 'Turn on notifications',
  },
  ko: {
    'inbox.title': '알림함',
    'inbox.empty': '메시지가 없습니다.',
    'inbox.unread': '읽지 않은 메시지 {n}개',
    'inbox.readall': '모두 읽음',
    'inbox.push': '이 휴대폰의 알림',
    'inbox.push.browser': '브라우저에서는 메시지가 이곳에 도착합니다. 알림으로 받으려면 스마트짐 앱을 설치하세요.',
    'inbox.push.on': '이 휴대폰에서 알림을 받습니다.',
    'inbox.push.off': '이 휴대폰에서 알림이 꺼져 있습니다.',
    'inbox.push.enable': '알림 켜기',
  },
};
