// Voice messages: microphone -> Web Audio (AudioWorklet) -> 16-bit PCM WAV in a Blob.
// The server takes WAV/FLAC/OGG/MP3 but not the browser's own webm/opus, so the page encodes
// WAV itself, at the microphone's rate; the server resamples to 16 kHz with a proper filter.

export const MAX_SECONDS = 59; // the server's default limit is 60 s per clip

export function recordingSupported() {
  // getUserMedia and AudioWorklet exist only in secure contexts: https, or http://localhost.
  return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.AudioWorkletNode);
}

export class Recorder {
  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
    try {
      this.context = new AudioContext();
      await this.context.audioWorklet.addModule(new URL("./recorder-worklet.js", import.meta.url));
      this.chunks = [];
      this.node = new AudioWorkletNode(this.context, "pcm-capture", { channelCount: 1, channelCountMode: "explicit" });
      this.node.port.onmessage = (event) => {
        if (event.data === "flushed") this.onflushed();
        else this.chunks.push(event.data);
      };
      this.source = this.context.createMediaStreamSource(this.stream);
      // The node writes no output (silence); being connected to the destination keeps it pulled.
      this.source.connect(this.node).connect(this.context.destination);
    } catch (err) {
      this.release();
      throw err;
    }
  }

  // Stops and returns {blob: WAV, seconds}.
  async stop() {
    const flushed = new Promise((resolve) => { this.onflushed = resolve; });
    this.node.port.postMessage("flush");
    await flushed; // the last partial block has arrived
    const rate = this.context.sampleRate;
    this.release();
    const samples = concat(this.chunks);
    return { blob: encodeWav(samples, rate), seconds: samples.length / rate };
  }

  release() {
    if (this.source) this.source.disconnect();
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    if (this.context) this.context.close();
    this.source = this.stream = this.context = null;
  }
}

function concat(chunks) {
  const out = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

// Float32 samples in [-1, 1] -> a mono 16-bit PCM RIFF/WAVE Blob (44-byte header).
export function encodeWav(samples, sampleRate) {
  const bytes = samples.length * 2;
  const view = new DataView(new ArrayBuffer(44 + bytes));
  const ascii = (at, text) => [...text].forEach((ch, i) => view.setUint8(at + i, ch.charCodeAt(0)));
  ascii(0, "RIFF");
  view.setUint32(4, 36 + bytes, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * 2, true); // bytes per second
  view.setUint16(32, 2, true); // bytes per frame
  view.setUint16(34, 16, true); // bits per sample
  ascii(36, "data");
  view.setUint32(40, bytes, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([view.buffer], { type: "audio/wav" });
}
