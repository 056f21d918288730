// The chat page: a conversation column (type, attach photos, record voice; replies stream in)
// and a state panel (intent, slots and where each came from, sentiment, handoff).
import { Api, ApiError } from "./api.js";
import { cameraSupported, takePhoto } from "./camera.js";
import { MAX_SECONDS, Recorder, recordingSupported } from "./recorder.js";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "parley.apiKey"; // localStorage: survives restarts, like a saved login
const SPEAK_STORE = "parley.speakReplies";
const SESSION_STORE = "parley.session"; // sessionStorage: a reload keeps the conversation, a new tab starts one

const api = new Api(() => $("api-key").value);
const draft = { images: [], audio: null, retry: null }; // what the next turn carries besides its text
let sessionId = sessionStorage.getItem(SESSION_STORE);
let recorder = null;
let speaking = null; // the <audio> of the reply being played: one voice at a time, and none while recording
let busy = false;

// ---------- conversation ----------

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // never innerHTML: replies and readings are untrusted text
  return node;
}

function addMessage(node) {
  const hint = $("messages").querySelector(".hint");
  if (hint) hint.remove();
  $("messages").append(node);
  node.scrollIntoView({ block: "end" });
  return node;
}

function userMessage(text, images, audio) {
  const item = element("li", "msg user");
  if (text) item.append(element("div", "body", text));
  const media = element("div", "media");
  for (const image of images) {
    const thumb = element("img", "thumb");
    thumb.src = image.url;
    thumb.alt = image.name;
    media.append(thumb);
  }
  if (audio) media.append(element("span", "chip", `voice ${audio.seconds.toFixed(1)} s`));
  if (media.childElementCount) item.append(media);
  return addMessage(item);
}

// What the server heard and read, under the user's message (from a turn response or a history entry).
function addReadings(item, { transcript, images }) {
  if (transcript) item.append(element("div", "reading transcript", `heard: “${transcript}”`));
  for (const image of images || []) {
    const seen = [image.ocr_text && image.ocr_text.replace(/\s+/g, " "), image.caption, ...(image.barcodes || [])];
    const text = seen.filter(Boolean).join(" · ");
    if (text) item.append(element("div", "reading ocr", `read: ${text}`));
  }
}

function showError(err, hint) {
  const item = element("li", "msg error");
  const code = err instanceof ApiError ? err.code : "error";
  const status = err instanceof ApiError && err.status ? ` (${err.status})` : "";
  item.append(element("strong", null, `${code}${status}`), element("span", null, ` ${err.message}`));
  const advice = hint || adviceFor(err);
  if (advice) item.append(element("div", "advice", advice));
  return addMessage(item);
}

function adviceFor(err) {
  if (err.status === 401) return "Enter a valid API key at the top of the page, then send again.";
  if (err.status === 404 && err.code === "session_not_found") return "The conversation has expired; the next message starts a new one.";
  if (err.status === 429 || err.status === 503) return "The server is busy; try again in a few seconds.";
  return "";
}

// ---------- state panel ----------

const percent = (x) => `${Math.round(x * 100)}%`;

function renderState(state) {
  $("state-intent").textContent = state.intent ? `${state.intent} (${percent(state.intent_confidence)})` : "–";
  $("state-sentiment").textContent = state.sentiment ? `${state.sentiment} (${state.sentiment_score.toFixed(2)})` : "–";
  $("state-handed-off").textContent = state.handed_off ? "yes, a person will answer" : "no";
  $("state-handed-off").classList.toggle("alert", state.handed_off);
  $("state-requested").textContent = state.requested_slot || "–";
  $("state-turns").textContent = String(state.turns);
  const rows = Object.entries(state.slots).map(([name, value]) => {
    const source = state.slot_sources[name];
    const row = element("tr");
    row.dataset.slot = name;
    row.classList.toggle("fresh", Boolean(source && source.turn === state.turns)); // filled by the latest turn
    row.append(element("td", "name", name), element("td", "value", value));
    const from = element("td", "source");
    if (source) {
      from.append(element("span", `badge ${source.modality}`, source.modality));
      from.append(element("span", "muted", `turn ${source.turn}, ${percent(source.confidence)} sure`));
    }
    row.append(from);
    return row;
  });
  if (!rows.length) {
    const none = element("td", "muted", "none yet");
    none.colSpan = 3;
    rows.push(element("tr", "empty"));
    rows[0].append(none);
  }
  $("slots").replaceChildren(...rows);
}

function resetState() {
  renderState({ intent: null, sentiment: null, handed_off: false, requested_slot: null, turns: 0, slots: {}, slot_sources: {} });
  $("last-action").textContent = "";
}

// ---------- session ----------

function setSession(id) {
  sessionId = id;
  if (id) sessionStorage.setItem(SESSION_STORE, id);
  else sessionStorage.removeItem(SESSION_STORE);
  $("session-label").textContent = id ? `session ${id.slice(0, 8)}…` : "new conversation";
  $("session-label").title = id || "";
}

async function restoreSession() {
  if (!sessionId) return;
  try {
    const session = await api.getSession(sessionId);
    setSession(session.id);
    for (const entry of session.history) {
      if (entry.role === "user") {
        const item = userMessage(entry.text, [], null);
        for (const modality of entry.modalities.filter((m) => m !== "text")) {
          item.append(element("span", "chip", modality === "audio" ? "voice" : "photo"));
        }
        addReadings(item, entry);
      } else {
        addMessage(element("li", "msg assistant", entry.text)).dataset.turn = entry.turn;
      }
    }
    renderState(session.state);
  } catch (err) {
    if (err.status === 404) setSession(null); // expired or deleted: start afresh without a fuss
    else showError(err);
  }
}

// ---------- composer ----------

function renderAttachments() {
  const items = draft.images.map((image, i) => {
    const item = element("li", "attachment");
    const thumb = element("img", "thumb");
    thumb.src = image.url;
    thumb.alt = image.name;
    item.append(thumb, removeButton(() => { URL.revokeObjectURL(image.url); draft.images.splice(i, 1); }));
    return item;
  });
  if (draft.audio) {
    const item = element("li", "attachment voice");
    const player = element("audio");
    player.controls = true;
    player.src = draft.audio.url;
    item.append(element("span", "chip", `voice ${draft.audio.seconds.toFixed(1)} s`), player,
      removeButton(() => { URL.revokeObjectURL(draft.audio.url); draft.audio = null; }));
    items.push(item);
  }
  $("attachments").replaceChildren(...items);
}

function removeButton(remove) {
  const button = element("button", "remove", "×");
  button.type = "button";
  button.title = "Remove";
  button.onclick = () => { remove(); renderAttachments(); };
  return button;
}

function addImage(blob, name) {
  draft.images.push({ blob, name, url: URL.createObjectURL(blob) });
  renderAttachments();
}

async function toggleRecording() {
  const button = $("record");
  button.disabled = true; // opening or closing the microphone takes a moment: no double clicks meanwhile
  try {
    if (recorder) await stopRecording(button);
    else await startRecording(button);
  } finally {
    button.disabled = false;
  }
}

async function startRecording(button) {
  if (speaking) speaking.pause(); // the microphone should not hear the reply
  const starting = new Recorder();
  try {
    await starting.start();
  } catch (err) {
    showError(new ApiError(0, "microphone", `the microphone could not be opened (${err.message})`));
    return;
  }
  recorder = starting;
  const started = Date.now();
  button.classList.add("recording");
  button.textContent = "Stop 0 s";
  recorder.timer = setInterval(() => {
    const seconds = Math.floor((Date.now() - started) / 1000);
    button.textContent = `Stop ${seconds} s`;
    if (seconds >= MAX_SECONDS) toggleRecording();
  }, 250);
}

async function stopRecording(button) {
  clearInterval(recorder.timer);
  const active = recorder;
  recorder = null;
  button.classList.remove("recording");
  button.textContent = "Record";
  const { blob, seconds } = await active.stop();
  if (draft.audio) URL.revokeObjectURL(draft.audio.url);
  draft.audio = { blob, seconds, url: URL.createObjectURL(blob) };
  renderAttachments();
}

// ---------- one turn ----------

async function send() {
  if (busy) return;
  if (recorder) await toggleRecording(); // Send while recording: stop, and send the clip with the message
  const text = $("text").value.trim();
  if (!(text || draft.images.length || draft.audio)) return;
  const images = draft.images.splice(0);
  const audio = draft.audio;
  draft.audio = null;
  // The same message sent again (after a failure) keeps its Idempotency-Key: if the first try was
  // committed after all (the connection dropped mid-stream), the server replays it instead of a second turn.
  const signature = [text, ...images.map((i) => i.url), audio ? audio.url : "", $("speak").checked].join("\n");
  const retryKey = draft.retry && draft.retry.signature === signature ? draft.retry.key : newKey();
  draft.retry = null;
  $("text").value = "";
  renderAttachments();
  const restore = () => { // give the user their message back, to send again
    if ($("text").value || draft.images.length || draft.audio) return; // they have started another one
    $("text").value = text;
    draft.images.push(...images);
    draft.audio = audio;
    draft.retry = { signature, key: retryKey };
    renderAttachments();
  };

  const form = new FormData();
  if (text) form.append("text", text);
  for (const image of images) form.append("image", image.blob, image.name);
  if (audio) form.append("audio", audio.blob, "voice.wav");
  if ($("speak").checked) form.append("reply_audio", "true");

  const sent = userMessage(text, images, audio);
  const reply = addMessage(element("li", "msg assistant streaming"));
  const body = reply.appendChild(element("div", "body", ""));
  reply.dataset.tokens = "0";
  setBusy(true);
  try {
    if (!sessionId) setSession((await api.createSession()).id);
    for await (const { event, data } of api.streamTurn(sessionId, form, retryKey)) {
      if (event === "token") {
        body.textContent += data.text;
        reply.dataset.tokens = String(Number(reply.dataset.tokens) + 1);
        reply.scrollIntoView({ block: "end" });
      } else if (event === "replace") {
        body.textContent = data.text; // the model's wording lost a fact: the policy's wording stands
      } else if (event === "done") {
        finish(reply, body, sent, data);
      } else if (event === "error") {
        throw new ApiError(0, data.error.code, data.error.message);
      }
    }
    if (!reply.dataset.turn) throw new ApiError(0, "stream_ended", "the reply stopped before it was complete");
  } catch (err) {
    reply.remove();
    sent.classList.add("failed");
    if (err.code === "session_not_found") setSession(null);
    showError(err);
    restore();
  } finally {
    setBusy(false);
  }
}

function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // crypto.randomUUID needs https; this does not
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function finish(reply, body, sent, data) {
  body.textContent = data.reply;
  reply.classList.remove("streaming");
  reply.dataset.turn = String(data.turn);
  addReadings(sent, data);
  renderState(data.state);
  const { total, first_token: first } = data.timings_ms || {};
  const timing = [first && `first word after ${Math.round(first)} ms`, total && `done after ${Math.round(total)} ms`];
  $("last-action").textContent = [`last reply: ${data.action}`, ...timing.filter(Boolean)].join(", ");
  if (data.reply_audio && data.reply_audio.data) {
    const player = element("audio");
    player.controls = true;
    player.src = `data:${data.reply_audio.mime_type};base64,${data.reply_audio.data}`;
    reply.append(player);
    if ($("speak").checked) {
      if (speaking) speaking.pause();
      speaking = player;
      player.play().then(
        () => { reply.dataset.spoken = "playing"; },
        () => reply.append(element("div", "advice", "Press play to hear the reply.")), // autoplay refused
      );
    }
  }
}

function setBusy(value) {
  busy = value;
  $("send").disabled = value;
  $("send").textContent = value ? "…" : "Send";
  $("new-session").disabled = value;
}

// ---------- wiring ----------

function init() {
  $("api-key").value = localStorage.getItem(KEY_STORE) || "";
  $("api-key").addEventListener("change", () => localStorage.setItem(KEY_STORE, $("api-key").value.trim()));
  $("speak").checked = localStorage.getItem(SPEAK_STORE) === "true";
  $("speak").addEventListener("change", () => localStorage.setItem(SPEAK_STORE, String($("speak").checked)));

  $("composer").addEventListener("submit", (event) => { event.preventDefault(); send(); });
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(); }
  });
  $("photo-input").addEventListener("change", (event) => {
    for (const file of event.target.files) addImage(file, file.name);
    event.target.value = ""; // the same file can be picked again
  });
  // A screenshot pasted into the message box, or image files dropped on the page, are attached too.
  const attachFiles = (files) => [...files].filter((f) => f.type.startsWith("image/")).forEach((f) => addImage(f, f.name || "pasted.png"));
  $("text").addEventListener("paste", (event) => attachFiles(event.clipboardData.files));
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => { event.preventDefault(); attachFiles(event.dataTransfer.files); });

  const insecure = "needs https (or http://localhost) and a browser that allows it";
  $("record").disabled = !recordingSupported();
  $("record").title = recordingSupported() ? "Record a voice message" : `Voice recording ${insecure}`;
  $("record").addEventListener("click", toggleRecording);
  $("camera").disabled = !cameraSupported();
  if (!cameraSupported()) $("camera").title = `The camera ${insecure}`;
  $("camera").addEventListener("click", async () => {
    try {
      const photo = await takePhoto($("camera-dialog"));
      if (photo) addImage(photo, `camera-${Date.now()}.jpg`);
    } catch (err) {
      showError(new ApiError(0, "camera", `the camera could not be opened (${err.message})`));
    }
  });

  $("new-session").addEventListener("click", () => {
    setSession(null);
    $("messages").replaceChildren(element("li", "hint muted", "New conversation. Say hello."));
    resetState();
  });

  setSession(sessionId);
  restoreSession();
}

init();
