// Calls to Parley's native API: sessions, and turns streamed as server-sent events.
// Every failure becomes an ApiError carrying the server's {"error": {"code", "message"}}.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status; // HTTP status, or 0 when the server could not be reached
    this.code = code;
  }
}

export class Api {
  constructor(getKey) {
    this.getKey = getKey; // () => the API key typed by the user, or ""
  }

  headers(extra = {}) {
    const key = this.getKey().trim();
    return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
  }

  async request(method, path, { body, headers } = {}) {
    let response;
    try {
      response = await fetch(path, { method, body, headers: this.headers(headers) });
    } catch (err) {
      throw new ApiError(0, "unreachable", `could not reach the server (${err.message})`);
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  async createSession() {
    const response = await this.request("POST", "/v1/sessions", {
      body: JSON.stringify({ metadata: { channel: "web" } }),
      headers: { "Content-Type": "application/json" },
    });
    return response.json();
  }

  async getSession(id) {
    return (await this.request("GET", `/v1/sessions/${encodeURIComponent(id)}`)).json();
  }

  // Sends one turn as multipart/form-data and yields {event, data} as the reply streams in:
  // "token" ({text}), "replace" ({text}), "done" (the full turn response), "error" ({error}).
  // `idempotencyKey` makes a resend of the same message safe (the server replays a committed turn).
  async *streamTurn(sessionId, form, idempotencyKey) {
    const response = await this.request("POST", `/v1/sessions/${encodeURIComponent(sessionId)}/turns?stream=true`, {
      body: form, // the browser writes the multipart boundary
      headers: { Accept: "text/event-stream", "Idempotency-Key": idempotencyKey },
    });
    yield* serverSentEvents(response.body);
  }
}

async function errorOf(response) {
  const text = await response.text();
  try {
    const { error } = JSON.parse(text);
    if (error && error.code) return new ApiError(response.status, error.code, error.message || "");
  } catch {
    // not JSON (a proxy's HTML page, say): fall through and show the status line and the start of the text
  }
  return new ApiError(response.status, "http_error", `${response.status} ${response.statusText} ${text.slice(0, 200)}`);
}

// A ReadableStream of SSE bytes -> {event, data (parsed JSON)} as each event completes.
export async function* serverSentEvents(stream) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer += value;
    // Line ends -> "\n"; a trailing "\r" waits, it may be the first half of a "\r\n" split across chunks.
    const tail = !done && buffer.endsWith("\r") ? "\r" : "";
    buffer = buffer.slice(0, buffer.length - tail.length).replace(/\r\n?/g, "\n") + tail;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const parsed = parseEvent(block);
      if (parsed) yield parsed;
    }
    if (done) return;
  }
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { event, data: JSON.parse(data.join("\n")) } : null;
}
