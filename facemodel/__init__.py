"""facemodel: ONNX face detection, alignment, embedding and 1:N matching, called over local IPC."""
