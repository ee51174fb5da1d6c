// The gateway's WebSocket: the connect handshake, request/response by id,
// events, and automatic reconnection with a visible state.

import { randomId } from "./ids.js";

const PROTOCOL = 4;
const CLIENT_VERSION = "0.1.0";
const RETRY_MIN_MS = 300;
const RETRY_MAX_MS = 5000;
const REQUEST_TIMEOUT_MS = 30000;

/** Why a request failed, with the gateway's error code when it sent one. */
export class GatewayError extends Error {
  constructor(message, code = "UNAVAILABLE", details = undefined) {
    super(message);
    this.code = code;
    this.details = details;
  }
}

/** The WebSocket URL of the gateway that served this page (any path upgrades). */
export function gatewayUrl(loc = window.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}${loc.pathname}`;
}

/**
 * One logical connection to the gateway. States: "offline", "connecting",
 * "online", "reconnecting", "auth-failed". Listeners: onState(state, detail),
 * onEvent(name, payload), onHello(helloPayload).
 */
export class GatewayClient {
  constructor(url, { onState, onEvent, onHello }) {
    this.url = url;
    this.onState = onState;
    this.onEvent = onEvent;
    this.onHello = onHello;
    this.state = "offline";
    this.hello = null;
    this._ws = null;
    this._credentials = null;
    this._pending = new Map();
    this._attempt = 0;
    this._retryTimer = null;
    this._wanted = false;
    this._everConnected = false;
  }

  /** Connect with {kind: "token"|"password", secret}; resolves with hello-ok. */
  connect(credentials) {
    this._credentials = credentials;
    this._wanted = true;
    this._attempt = 0;
    this._everConnected = false;
    return new Promise((resolve, reject) => {
      this._firstResult = { resolve, reject };
      this._open();
    });
  }

  /** Stop for good (sign out). */
  close() {
    this._wanted = false;
    clearTimeout(this._retryTimer);
    this._credentials = null;
    if (this._ws) this._ws.close(1000);
    this._ws = null;
    this._failPending(new GatewayError("disconnected"));
    this._setState("offline");
  }

  /** Send a request; resolves with its payload or rejects with GatewayError. */
  request(method, params = {}) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.state !== "online") {
      return Promise.reject(new GatewayError("not connected to the gateway", "UNAVAILABLE"));
    }
    return this._send(ws, method, params);
  }

  _send(ws, method, params) {
    const id = randomId();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new GatewayError(`${method}: no answer from the gateway`, "TIMEOUT"));
      }, REQUEST_TIMEOUT_MS);
      this._pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ type: "req", id, method, params }));
    });
  }

  _setState(state, detail = "") {
    this.state = state;
    this.onState(state, detail);
  }

  _open() {
    clearTimeout(this._retryTimer);
    this._setState(this._everConnected ? "reconnecting" : "connecting", this._attemptText());
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this._connectionLost(`cannot open ${this.url}: ${err.message}`);
      return;
    }
    this._ws = ws;
    let handshaking = true;
    ws.onmessage = (msg) => {
      let frame;
      try {
        frame = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (frame.type === "event" && frame.event === "connect.challenge" && handshaking) {
        handshaking = false;
        this._handshake(ws);
      } else if (frame.type === "res") {
        this._settle(frame);
      } else if (frame.type === "event") {
        this.onEvent(frame.event, frame.payload || {});
      }
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._failPending(new GatewayError("connection closed", "UNAVAILABLE"));
      if (this.state === "auth-failed" || !this._wanted) return;
      const why = ev.code === 1012 ? "the gateway is restarting" : "the connection was lost";
      this._connectionLost(this._everConnected ? why : `cannot reach the gateway at ${this.url}`);
    };
  }

  async _handshake(ws) {
    const cred = this._credentials || { kind: "token", secret: "" };
    const auth = cred.kind === "password" ? { password: cred.secret } : { token: cred.secret };
    const params = {
      minProtocol: PROTOCOL,
      maxProtocol: PROTOCOL,
      client: {
        id: "openclaw-control-ui",
        displayName: "Control UI",
        version: CLIENT_VERSION,
        platform: "web",
        mode: "webchat",
        instanceId: randomId(),
      },
      caps: ["tool-events"],
      role: "operator",
      // admin: reset and delete sessions (OpenClaw asks admin for both).
      scopes: ["operator.admin", "operator.read", "operator.write"],
      auth,
      userAgent: navigator.userAgent,
    };
    try {
      const hello = await this._send(ws, "connect", params);
      this.hello = hello;
      this._attempt = 0;
      this._everConnected = true;
      this._setState("online");
      this.onHello(hello);
      this._settleFirst("resolve", hello);
    } catch (err) {
      if (isAuthError(err)) {
        this._wanted = false;
        this._setState("auth-failed", err.message);
        this._settleFirst("reject", err);
        ws.close(1000);
      }
      // Other failures close the socket; onclose schedules the retry.
    }
  }

  _settle(frame) {
    const waiter = this._pending.get(frame.id);
    if (!waiter) return;
    this._pending.delete(frame.id);
    clearTimeout(waiter.timer);
    if (frame.ok) {
      waiter.resolve(frame.payload);
    } else {
      const e = frame.error || {};
      waiter.reject(new GatewayError(e.message || "request failed", e.code, e.details));
    }
  }

  _failPending(err) {
    for (const waiter of this._pending.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(err);
    }
    this._pending.clear();
  }

  _connectionLost(why) {
    if (!this._wanted) return;
    this._attempt += 1;
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(this._attempt - 1, 5));
    const state = this._everConnected ? "reconnecting" : "connecting";
    this._setState(state, `${why}; retrying in ${Math.ceil(delay / 100) / 10} s`);
    if (!this._everConnected && this._attempt === 1) {
      this._settleFirst("reject", new GatewayError(why, "UNREACHABLE"));
    }
    this._retryTimer = setTimeout(() => this._open(), delay);
  }

  _attemptText() {
    return this._attempt ? `attempt ${this._attempt + 1}` : "";
  }

  _settleFirst(how, value) {
    const first = this._firstResult;
    if (!first) return;
    this._firstResult = null;
    first[how](value);
  }
}

/** A refusal the same secret cannot fix by retrying. */
export function isAuthError(err) {
  const code = (err.details && err.details.code) || "";
  return (
    err.code === "NOT_PAIRED" ||
    code.startsWith("AUTH_") ||
    /unauthori[sz]ed/i.test(err.message || "")
  );
}
