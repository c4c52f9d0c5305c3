// The branch reviews' words.
export const words = {
  en: {
    'review.write': 'Your review',
    'review.rating': 'Rating',
    'review.stars': '{n} of 5 stars',
    'review.text': 'What was it like?',
    'review.send': 'Post review',
    'review.saved': 'Thank you: your review is posted.',
    'review.mine': 'yours',
    'review.reply': 'The gym replied: {text}',
    'review.members': 'Only members write reviews.',
  },
  ko: {
    'review.write': '내 리뷰',
    'review.rating': '별점',
    'review.stars': '별 5개 중 {n}개',
    'review.text': '어떠셨나요?',
    'review.send': '리뷰 올리기',
    'review.saved': '감사합니다. 리뷰가 등록되었습니다.',
    'review.mine': '내 리뷰',
    'review.reply': '헬스장 답글: {text}',
    'review.members': '회원만 리뷰를 쓸 수 있습니다.',
  },
};
