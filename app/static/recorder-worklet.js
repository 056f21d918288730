// Runs on the audio thread: forwards the microphone's samples (mono float32) to the page in blocks.
const BLOCK = 4096; // frames per message: ~85 ms at 48 kHz, rather than one message per 128-frame quantum

class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(BLOCK);
    this.filled = 0;
    this.port.onmessage = () => { // on stop: send what is buffered, then say so
      this.flush();
      this.port.postMessage("flushed");
    };
  }

  flush() {
    this.port.postMessage(this.block.slice(0, this.filled));
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0][0]; // (128,) float32; absent while the input is silent/disconnected
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        this.block[this.filled++] = channel[i];
        if (this.filled === BLOCK) this.flush();
      }
    }
    return true; // keep running until the node is disconnected
  }
}

registerProcessor("pcm-capture", PcmCapture);
