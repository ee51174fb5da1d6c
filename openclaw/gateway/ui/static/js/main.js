// The Control UI: sign in, pick an agent and a session, chat, stop, see tools.

import { ChatView } from "./chat.js";
import { contentText } from "./dom.js";
import { GatewayClient, gatewayUrl } from "./gateway.js";
import { randomId } from "./ids.js";
import { SessionList, titleFrom } from "./sessions.js";
import { forgetSecret, loadPlace, loadSecret, saveSecret, savePlace } from "./storage.js";

const $ = (id) => document.getElementById(id);
const STATE_TEXT = {
  offline: "Not connected",
  connecting: "Connecting…",
  online: "Connected",
  reconnecting: "Reconnecting…",
  "auth-failed": "Signed out",
};
const TITLE_LOOKUPS = 25;

class App {
  constructor() {
    this.chat = new ChatView($("messages"));
    this.sessions = new SessionList($("session-list"), (key) => this.openSession(key));
    this.client = new GatewayClient(gatewayUrl(), {
      onState: (state, detail) => this.showState(state, detail),
      onEvent: (name, payload) => this.onEvent(name, payload),
      onHello: () => this.onHello(),
    });
    this.agents = [];
    this.agentId = null;
    this.sessionKey = null;
    // {runId, sessionKey, adopted} of the reply being streamed here; adopted when
    // this view did not send it (another tab, or before a reload or a switch).
    this.running = null;
    this.historySeq = 0; // the latest chat.history read of the open session
    this.stale = false; // the history changed while this view streamed its own reply
    this.connectedOnce = false;
    this.titleTried = new Set(); // sessions whose first message was already looked up
    this.bind();
  }

  bind() {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.signIn();
    });
    for (const radio of document.querySelectorAll("input[name=kind]")) {
      radio.addEventListener("change", () => {
        const password = this.kind() === "password";
        $("remember").disabled = password;
        if (password) $("remember").checked = false;
      });
    }
    $("sign-out").addEventListener("click", () => this.signOut());
    $("composer").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.send();
    });
    $("input").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.send();
      }
    });
    $("input").addEventListener("input", () => this.growInput());
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && this.running) {
        ev.preventDefault();
        this.stop();
      }
    });
    $("stop").addEventListener("click", () => this.stop());
    $("new-session").addEventListener("click", () => this.newSession());
    $("reset-session").addEventListener("click", (ev) => this.confirmThen(ev.currentTarget,
      "Really reset?", () => this.resetSession()));
    $("delete-session").addEventListener("click", (ev) => this.confirmThen(ev.currentTarget,
      "Really delete?", () => this.deleteSession()));
    $("agent-select").addEventListener("change", (ev) => this.chooseAgent(ev.target.value));
    $("toggle-sessions").addEventListener("click", () => this.toggleSidebar());
  }

  start() {
    const saved = loadSecret();
    if (saved) {
      $("remember").checked = saved.remember;
      this.connect(saved);
    } else {
      $("secret").focus();
    }
  }

  kind() {
    return document.querySelector("input[name=kind]:checked").value;
  }

  signIn() {
    // An empty secret is allowed: a gateway with auth mode "none" needs none.
    const secret = $("secret").value.trim();
    this.connect({ kind: this.kind(), secret, remember: $("remember").checked });
  }

  async connect(credentials) {
    this.loginError("");
    $("login-submit").disabled = true;
    try {
      await this.client.connect(credentials);
      saveSecret(credentials);
    } catch (err) {
      if (this.client.state === "auth-failed") {
        forgetSecret();
        this.loginError(authMessage(err, credentials.kind));
        $("secret").value = "";
        $("secret").focus();
      } else {
        this.loginError(`${err.message}. Is the gateway running? Retrying…`);
      }
    } finally {
      $("login-submit").disabled = false;
    }
  }

  signOut() {
    this.client.close();
    forgetSecret();
    this.connectedOnce = false;
    this.running = null;
    $("workspace").hidden = true;
    $("login").hidden = false;
    $("sign-out").hidden = true;
    document.querySelector(".agent-picker").hidden = true;
    $("secret").value = "";
    $("secret").focus();
  }

  loginError(text) {
    $("login-error").textContent = text;
    $("login-error").hidden = !text;
  }

  showState(state, detail) {
    const pill = $("conn-state");
    pill.dataset.state = state;
    pill.textContent = STATE_TEXT[state] || state;
    pill.title = detail || "";
    const banner = $("banner");
    if (state === "reconnecting") {
      banner.textContent = `Connection lost: ${detail || "reconnecting"}.`;
      banner.hidden = false;
    } else if (state === "online") {
      banner.hidden = true;
    }
    if (state === "connecting" && detail && !this.connectedOnce) this.loginError(`${detail}.`);
    if (state === "auth-failed" && this.connectedOnce) {
      // The gateway came back with another secret: ask for the new one.
      this.signOut();
      this.loginError(`The gateway no longer accepts the saved secret (${detail}).`);
    }
    this.updateComposer();
  }

  async onHello() {
    this.loginError("");
    $("login").hidden = true;
    $("workspace").hidden = false;
    $("sign-out").hidden = false;
    const reconnect = this.connectedOnce;
    this.connectedOnce = true;
    try {
      await this.loadAgents();
      await this.refreshSessions();
      const place = loadPlace();
      const key = reconnect ? this.sessionKey : place.agentId === this.agentId && place.sessionKey;
      await this.openSession(key || this.mainKey());
    } catch (err) {
      this.chat.addError(`Could not load the gateway's agents and sessions: ${err.message}`);
    }
    if (!reconnect) $("input").focus();
  }

  async loadAgents() {
    const result = await this.client.request("agents.list", {});
    this.agents = result.agents || [];
    const place = loadPlace();
    const ids = this.agents.map((a) => a.id);
    this.agentId = ids.includes(this.agentId) ? this.agentId
      : ids.includes(place.agentId) ? place.agentId : result.defaultId || ids[0] || "main";
    this.mainKeyName = result.mainKey || "main";
    const select = $("agent-select");
    select.replaceChildren(...this.agents.map((agent) => {
      const option = document.createElement("option");
      option.value = agent.id;
      option.textContent = agent.name ? `${agent.name} (${agent.id})` : agent.id;
      return option;
    }));
    select.value = this.agentId;
    document.querySelector(".agent-picker").hidden = false;
  }

  mainKey() {
    return `agent:${this.agentId}:${this.mainKeyName || "main"}`;
  }

  async chooseAgent(agentId) {
    this.agentId = agentId;
    await this.refreshSessions();
    await this.openSession(this.mainKey());
  }

  async refreshSessions() {
    const result = await this.client.request("sessions.list",
      { agentId: this.agentId, includeDerivedTitles: true });
    // One-off chat-completion sessions (agent:<id>:openai:<uuid>) are nobody's conversation.
    const rows = (result.sessions || []).filter((row) => !/:openai:[0-9a-f-]{36}$/.test(row.key));
    const provisional = this.sessions.rows.filter((row) => row.provisional
      && row.key === this.sessionKey && !rows.some((r) => r.key === row.key)
      && row.key.startsWith(`agent:${this.agentId}:`));
    this.sessions.setRows([...provisional, ...rows]);
    this.lookUpTitles();
  }

  /** Titles come from each session's first message (fetched in the background). */
  async lookUpTitles() {
    const keys = this.sessions.untitled().filter((key) => !this.titleTried.has(key));
    for (const key of keys.slice(0, TITLE_LOOKUPS)) {
      this.titleTried.add(key);
      try {
        const history = await this.client.request("chat.history",
          { sessionKey: key, limit: 1000, maxChars: 120 });
        const first = (history.messages || []).find((m) => m.role === "user");
        if (first) this.sessions.setTitle(key, contentText(first.content));
      } catch {
        return;
      }
    }
  }

  async openSession(key) {
    this.sessionKey = key;
    this.running = null; // a run still going is adopted again at its next event
    this.stale = false;
    const seq = ++this.historySeq;
    savePlace({ agentId: this.agentId, sessionKey: key });
    if (!this.sessions.rows.some((row) => row.key === key)) this.sessions.addProvisional(key);
    this.sessions.select(key);
    $("session-title").textContent = this.sessions.title(key);
    this.closeSidebar();
    this.chat.clear();
    this.updateComposer();
    try {
      const history = await this.client.request("chat.history", {
        sessionKey: key,
        limit: HISTORY_LIMIT,
      });
      if (this.sessionKey !== key || this.historySeq !== seq) return;
      this.chat.showHistory(history.messages || []);
      this.adoptPending();
      const first = (history.messages || []).find((m) => m.role === "user");
      if (first) this.setTitle(key, contentText(first.content));
    } catch (err) {
      if (this.sessionKey === key) this.chat.addError(`Could not load this session: ${err.message}`);
    }
  }

  /** Read the open session's history again and redraw it (a turn this view did
   * not send ended: its user message is only in the history). Deferred while
   * this view streams its own reply, which a redraw would cut off. */
  async reloadHistory({ keepScroll = true, retitle = false, notice = "", error = "" } = {}) {
    const key = this.sessionKey;
    if (this.running && !this.running.adopted) {
      this.stale = true;
      return;
    }
    this.stale = false;
    const seq = ++this.historySeq;
    try {
      const history = await this.client.request("chat.history", {
        sessionKey: key,
        limit: HISTORY_LIMIT,
      });
      if (this.sessionKey !== key || this.historySeq !== seq) return;
      if (this.running && !this.running.adopted) {
        this.stale = true;
        return;
      }
      const messages = history.messages || [];
      this.chat.showHistory(messages, { keepScroll });
      this.adoptPending();
      // The title is the session's first message: when the history holds the
      // whole session (fewer than the limit), it says which that is now (another
      // tab may have reset the session).
      if (retitle || messages.length < HISTORY_LIMIT) {
        const first = messages.find((m) => m.role === "user");
        if (first) this.setTitle(key, contentText(first.content));
        else this.forgetTitle(key);
      }
      const last = messages[messages.length - 1];
      if (notice && !(last && last.role === "assistant" && contentText(last.content) === notice)) {
        this.chat.addNotice(notice);
      }
      if (error) this.chat.addError(error);
    } catch {
      // The live view stays; the next turn or reopening the session redraws it.
    }
  }

  /** A run of the open session that this view did not start: follow it, and
   * offer Stop (and Escape) for it. runId null: a run the history shows going
   * (it ends on unanswered tool calls), known by its session only. */
  adopt(runId) {
    if (this.running) {
      if (this.running.runId === null && runId) this.running.runId = runId;
      return;
    }
    this.running = { runId, sessionKey: this.sessionKey, adopted: true };
    this.updateComposer();
  }

  /** A long tool call sends no event until it ends: the history tells it is running. */
  adoptPending() {
    if (this.chat.pendingCalls.size) this.adopt(null);
  }

  setTitle(key, text) {
    this.sessions.setTitle(key, text);
    if (key === this.sessionKey) $("session-title").textContent = this.sessions.title(key);
  }

  /** The session's first message changed (a reset) or was no message: untitled again. */
  forgetTitle(key) {
    this.sessions.forgetTitle(key);
    this.titleTried.delete(key);
    if (key === this.sessionKey) $("session-title").textContent = this.sessions.title(key);
  }

  newSession() {
    const key = `agent:${this.agentId}:webchat-${randomId().slice(0, 8)}`;
    this.sessions.addProvisional(key);
    this.openSession(key);
    $("input").focus();
  }

  async resetSession() {
    try {
      await this.client.request("sessions.reset", { key: this.sessionKey });
      this.sessions.titles.delete(this.sessionKey);
      this.titleTried.delete(this.sessionKey);
      await this.refreshSessions();
      await this.openSession(this.sessionKey);
    } catch (err) {
      this.chat.addError(`Reset failed: ${err.message}`);
    }
  }

  async deleteSession() {
    const key = this.sessionKey;
    try {
      await this.client.request("sessions.delete", { key });
      this.sessions.rows = this.sessions.rows.filter((row) => row.key !== key);
      await this.refreshSessions();
      const next = this.sessions.rows.find((row) => row.key !== key);
      await this.openSession(next ? next.key : this.mainKey());
    } catch (err) {
      this.chat.addError(`Delete failed: ${err.message}`);
    }
  }

  async send() {
    const input = $("input");
    const text = input.value.trim();
    if (!text || this.running || this.client.state !== "online") return;
    input.value = "";
    this.growInput();
    const sessionKey = this.sessionKey;
    const runId = randomId();
    const userItem = this.chat.addUser(text);
    const reset = RESET_COMMAND.test(text);
    // A command does not title the session; the redraw after it does.
    const titled = !reset && !this.sessions.titles.has(sessionKey);
    if (titled) this.setTitle(sessionKey, titleFrom(text));
    // A bare "/new" is answered by the gateway's acknowledgement; "/new <text>"
    // by a turn on <text> in the fresh session.
    this.running = { runId, sessionKey, reset, bare: BARE_RESET_COMMAND.test(text) };
    this.chat.reply(runId);
    this.updateComposer();
    try {
      const ack = await this.client.request("chat.send",
        { sessionKey, message: text, idempotencyKey: runId });
      if (isAbortAnswer(ack)) {
        this.stopWordAnswered(runId, sessionKey, userItem, titled, ack);
        return;
      }
      if (ack.runId && ack.runId !== runId && this.running && this.running.runId === runId) {
        this.running.runId = ack.runId;
        this.chat.replies.set(ack.runId, this.chat.reply(runId));
      }
    } catch (err) {
      if (this.running && this.running.runId === runId) this.running = null;
      this.chat.finishReply(runId, "error");
      this.chat.addError(err.message);
      this.updateComposer();
    }
  }

  /** The gateway took the message for OpenClaw's stop command ("/stop", "stop",
   * "exit", "please stop"...): it aborted the session's runs, if any, and
   * started no turn, so no answer comes and the word is not in the transcript.
   * Take it out of the view (with the title it gave a new chat) and say what
   * happened; an aborted run's own "aborted" event ends it as Stop would. */
  stopWordAnswered(runId, sessionKey, userItem, titled, answer) {
    if (titled) this.forgetTitle(sessionKey);
    if (this.sessionKey !== sessionKey) return; // the view was redrawn meanwhile
    userItem.remove();
    this.chat.dropReply(runId);
    if (this.running && this.running.runId === runId) this.running = null;
    this.updateComposer();
    const runs = Array.isArray(answer.runIds) ? answer.runIds.length : 0;
    this.chat.addNotice(answer.aborted
      ? `Stopped ${runs === 1 ? "the running answer" : `${runs} running answers`}.`
      : "Nothing to stop: no answer is running.");
    if (this.stale) this.reloadHistory();
  }

  async stop() {
    const run = this.running;
    if (!run) return;
    const params = { sessionKey: run.sessionKey };
    if (run.runId) params.runId = run.runId; // else every run of the session
    try {
      const answer = await this.client.request("chat.abort", params);
      if (!answer.aborted && this.running === run) {
        // Nothing was running (the run the history pointed at is gone).
        this.running = null;
        this.chat.endPendingCalls();
        this.updateComposer();
      }
    } catch (err) {
      this.chat.addError(`Could not stop: ${err.message}`);
    }
  }

  onEvent(name, payload) {
    if (name === "chat") this.onChat(payload);
    else if (name === "agent" && payload.stream === "tool") {
      if (payload.sessionKey === this.sessionKey) {
        this.adopt(payload.runId || null);
        this.chat.toolEvent(payload.data || {}, payload.runId);
      }
    } else if (name === "shutdown") {
      $("banner").textContent = "The gateway is stopping; reconnecting when it is back.";
      $("banner").hidden = false;
    }
  }

  onChat(event) {
    const mine = event.sessionKey === this.sessionKey;
    const text = event.message ? contentText(event.message.content) : undefined;
    if (!mine) {
      if (event.state !== "delta") this.refreshSessions().catch(() => {});
      return;
    }
    const runId = event.runId;
    if (event.state === "delta") {
      this.adopt(runId || null);
      this.chat.updateReply(runId, text ?? "");
      return;
    }
    const own = Boolean(this.running && this.running.runId === runId && !this.running.adopted);
    const reset = own && this.running.reset;
    const bare = reset && this.running.bare;
    this.chat.finishReply(runId, event.state, text);
    if (event.state === "error") {
      this.chat.addError(event.errorMessage || "The agent failed.");
    }
    if (this.running && (this.running.runId === runId || this.running.runId === null)) {
      this.running = null;
    }
    this.updateComposer();
    if (reset) {
      // "/new" or "/reset" (the gateway resets the session in place), however
      // its run ended: show the fresh session, titled by its first message; a
      // bare command's acknowledgement ("✅ New session started.") stays as a
      // notice when the transcript does not hold it, a failed turn's error too.
      this.forgetTitle(this.sessionKey);
      this.reloadHistory({
        keepScroll: false,
        retitle: true,
        notice: bare && event.state === "final" ? text || "" : "",
        error: event.state === "error" ? event.errorMessage || "The agent failed." : "",
      });
    } else if (!own || this.stale) {
      this.reloadHistory();
    }
    this.refreshSessions().catch(() => {});
  }

  updateComposer() {
    const online = this.client.state === "online";
    $("send").hidden = Boolean(this.running);
    $("stop").hidden = !this.running;
    $("send").disabled = !online;
    $("app").dataset.busy = this.running ? "true" : "false";
  }

  growInput() {
    const input = $("input");
    input.rows = Math.min(8, Math.max(1, input.value.split("\n").length));
  }

  confirmThen(button, question, action) {
    if (button.dataset.armed === "true") {
      button.dataset.armed = "false";
      button.textContent = button.dataset.label;
      action();
      return;
    }
    button.dataset.label = button.textContent;
    button.dataset.armed = "true";
    button.textContent = question;
    setTimeout(() => {
      if (button.dataset.armed === "true") {
        button.dataset.armed = "false";
        button.textContent = button.dataset.label;
      }
    }, 4000);
  }

  toggleSidebar() {
    const open = $("app").classList.toggle("sidebar-open");
    $("toggle-sessions").setAttribute("aria-expanded", String(open));
  }

  closeSidebar() {
    $("app").classList.remove("sidebar-open");
    $("toggle-sessions").setAttribute("aria-expanded", "false");
  }
}

/** "/new" or "/reset", alone or followed by text (the gateway's reset commands). */
const RESET_COMMAND = /^\/(?:new|reset)(?:\s|$)/i;
/** The same alone ("/reset soft" too): answered by an acknowledgement, not a turn. */
const BARE_RESET_COMMAND = /^\/(?:new|reset)(?:\s+soft)?\s*$/i;
/** Messages of a session read at most per chat.history. */
const HISTORY_LIMIT = 200;

/** chat.send's answer to a stop command: chat.abort's ({aborted, runIds}), no run status. */
function isAbortAnswer(answer) {
  return Boolean(answer) && typeof answer.aborted === "boolean" && !("status" in answer);
}

function authMessage(err, kind) {
  const code = (err.details && err.details.code) || "";
  if (code === "AUTH_RATE_LIMITED") return "Too many failed attempts; wait a moment and try again.";
  const what = kind === "password" ? "password" : "token";
  if (code === "DEVICE_IDENTITY_REQUIRED" || /missing/.test(err.message || "")) {
    // The gateway saw no credential of the kind it uses: the other kind was chosen.
    const other = kind === "password" ? "token" : "password";
    return `This gateway does not use a ${what}; sign in with its ${other} (${err.message}).`;
  }
  return `Wrong ${what}: the gateway did not accept it (${err.message}).`;
}

new App().start();
