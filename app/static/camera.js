// Photos from the camera: a live preview in a <dialog>, one frame captured as a JPEG Blob.

export function cameraSupported() {
  return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia); // secure contexts only
}

// Opens the preview; resolves to a JPEG Blob, or null when the user cancels (button or Esc).
export async function takePhoto(dialog) {
  const video = dialog.querySelector("video");
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { facingMode: "environment", width: { ideal: 1920 }, height: { ideal: 1080 } }, // the back camera on phones
  });
  video.srcObject = stream;
  dialog.showModal();
  try {
    return await new Promise((resolve) => {
      dialog.querySelector("#camera-take").onclick = () => resolve(snapshot(video));
      dialog.querySelector("#camera-cancel").onclick = () => resolve(null);
      dialog.oncancel = () => resolve(null);
    });
  } finally {
    stream.getTracks().forEach((track) => track.stop());
    video.srcObject = null;
    dialog.close();
  }
}

function snapshot(video) {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92)); // text stays legible for OCR
}
