// The session list: newest first, titled by their first message.

import { el } from "./dom.js";

const TITLE_CHARS = 60;

/** A short title from a message's text. */
export function titleFrom(text) {
  const line = String(text || "").replace(/\s+/g, " ").trim();
  return line.length > TITLE_CHARS ? `${line.slice(0, TITLE_CHARS - 1)}…` : line;
}

/** A readable fallback for a session without a known first message. */
export function keyLabel(key) {
  const rest = String(key).split(":").slice(2).join(":");
  if (!rest || rest === "main") return "Main session";
  return rest.startsWith("webchat-") ? "New chat" : rest;
}

export class SessionList {
  constructor(list, onOpen) {
    this.list = list;
    this.onOpen = onOpen;
    this.titles = new Map();
    this.rows = [];
    this.current = null;
  }

  title(key) {
    return this.titles.get(key) || keyLabel(key);
  }

  /** Replace the rows (sessions.list's, newest first) and redraw. */
  setRows(rows) {
    for (const row of rows) {
      const named = row.derivedTitle || row.displayName || row.label || row.subject;
      if (named) this.titles.set(row.key, titleFrom(named));
    }
    this.rows = rows;
    this.render();
  }

  /** Put the open session, not yet in the gateway's index, at the top (one at a time). */
  addProvisional(key) {
    const rows = this.rows.filter((row) => !row.provisional || row.key === key);
    if (!rows.some((row) => row.key === key)) {
      rows.unshift({ key, updatedAt: Date.now(), provisional: true });
    }
    this.rows = rows;
    this.render();
  }

  setTitle(key, text) {
    const title = titleFrom(text);
    if (!title || this.titles.get(key) === title) return;
    this.titles.set(key, title);
    this.render();
  }

  forgetTitle(key) {
    if (this.titles.delete(key)) this.render();
  }

  select(key) {
    this.current = key;
    this.render();
  }

  /** Keys whose title is not known yet. */
  untitled() {
    return this.rows.filter((row) => !row.provisional && !this.titles.has(row.key))
      .map((row) => row.key);
  }

  render() {
    const items = this.rows.map((row) => {
      const when = row.updatedAt ? new Date(row.updatedAt).toLocaleString() : "";
      const button = el("button", {
        type: "button",
        className: "session",
        "aria-current": row.key === this.current ? "true" : undefined,
        dataset: { key: row.key },
        title: row.key,
        onclick: () => this.onOpen(row.key),
      }, el("span", { className: "session-title" }, this.title(row.key)),
      el("span", { className: "session-time" }, when));
      return el("li", {}, button);
    });
    this.list.replaceChildren(...items);
  }
}
