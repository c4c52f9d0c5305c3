// Face enrolment's words. The consent text is keyed by the version auth asks for: a new
// version needs its text here before members can accept it.
export const words = {
  en: {
    'face.title': 'Face entry',
    'face.none': 'No face is enrolled: you enter with the QR pass.',
    'face.enrolled': 'Your face is enrolled (since {at}). The gate camera lets you in.',
    'face.consent.title': 'Consent to face recognition',
    'face.consent.2026-11':
      'SmartGym turns one photo of your face into a numeric template used only to open the gates of the gyms where you are a member. ' +
      'The photo itself is not stored. The template is encrypted and kept until you erase it, withdraw this consent or close your account; ' +
      'it is never shared with third parties. You can always enter with the QR pass instead.',
    'face.consent.accept': 'I have read and accept the consent text above',
    'face.consent.needed': 'Accept the consent text first.',
    'face.consent.unknown': 'This version of the app cannot show consent text {v}. Update the app to enrol.',
    'face.file': 'A photo of your face (JPEG or PNG)',
    'face.upload': 'Enrol this photo',
    'face.pick': 'Choose a photo first.',
    'face.camera': 'Use the camera',
    'face.shoot': 'Take the photo',
    'face.preview': 'Camera preview',
    'face.nocamera': 'The camera is not available; choose a photo instead.',
    'face.done': 'Your face is enrolled.',
    'face.unusable': 'This photo cannot be used: {reason}. Try a well-lit photo facing the camera.',
    'face.erase': 'Delete my face data',
    'face.erase.confirm': 'Delete your face data and withdraw your consent?',
    'face.erased': 'Your face data is deleted.',
  },
  ko: {
    'face.title': '얼굴 출입',
    'face.none': '등록된 얼굴이 없습니다. QR 출입증으로 입장하세요.',
    'face.enrolled': '얼굴이 등록되어 있습니다 ({at}부터). 출입문 카메라로 입장할 수 있습니다.',
    'face.consent.title': '얼굴 인식 동의',
    'face.consent.2026-11':
      '스마트짐은 얼굴 사진 한 장을 숫자 템플릿으로 바꾸어, 회원으로 등록된 지점의 출입문을 여는 데에만 사용합니다. ' +
      '사진 자체는 저장하지 않습니다. 템플릿은 암호화되어 삭제하거나 동의를 철회하거나 탈퇴할 때까지 보관되며, 제3자에게 제공되지 않습니다. ' +
      '언제든지 QR 출입증으로 입장할 수 있습니다.',
    'face.consent.accept': '위 동의서를 읽었으며 동의합니다',
    'face.consent.needed': '먼저 동의서에 동의해 주세요.',
    'face.consent.unknown': '이 버전의 앱은 동의서 {v}를 표시할 수 없습니다. 앱을 업데이트해 주세요.',
    'face.file': '얼굴 사진 (JPEG 또는 PNG)',
    'face.upload': '이 사진으로 등록',
    'face.pick': '먼저 사진을 선택하세요.',
    'face.camera': '카메라 사용',
    'face.shoot': '사진 찍기',
    'face.preview': '카메라 미리보기',
    'face.nocamera': '카메라를 사용할 수 없습니다. 사진을 선택하세요.',
    'face.done': '얼굴이 등록되었습니다.',
    'face.unusable': '이 사진은 사용할 수 없습니다: {reason}. 밝은 곳에서 정면 사진을 사용해 주세요.',
    'face.erase': '내 얼굴 정보 삭제',
    'face.erase.confirm': '얼굴 정보를 삭제하고 동의를 철회할까요?',
    'face.erased': '얼굴 정보가 삭제되었습니다.',
  },
};
