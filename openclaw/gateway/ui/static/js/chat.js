// The conversation pane: history, streamed replies, tool activity, errors.

import { contentText, el, prettyValue } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

export class ChatView {
  constructor(list) {
    this.list = list;
    this.replies = new Map(); // runId -> {item, body, text}
    // Tool boxes, keyed "run:<runId>:<toolCallId>" live and "msg:<index>:<toolCallId>" from
    // the history: some servers reuse call ids ("call_0") in every turn.
    this.tools = new Map(); // key -> {box, status, args, result, resultPart}
    this.historyCalls = new Map(); // toolCallId -> key of its latest call in the history
    this.pendingCalls = new Map(); // toolCallId -> box of a call the history ends on
  }

  clear() {
    this.list.replaceChildren();
    this.replies.clear();
    this.tools.clear();
    this.historyCalls.clear();
    this.pendingCalls.clear();
  }

  /** Show a transcript (chat.history's messages, oldest first). With keepScroll
   * the view stays where the reader left it unless it was at the end. */
  showHistory(messages, { keepScroll = false } = {}) {
    const scroller = this.list;
    const atEnd = this.atEnd();
    const top = scroller.scrollTop;
    this.clear();
    messages.forEach((message, index) => this.addHistoryMessage(message, index));
    // Calls the history ends on have no answer yet: their run is still going
    // (a finished or stopped run writes a message after them). Its live events
    // update these boxes instead of opening new ones.
    const last = messages.length - 1;
    for (const [id, key] of this.historyCalls) {
      const tool = this.tools.get(key);
      if (key.startsWith(`msg:${last}:`) && !tool.box.dataset.state) {
        this.pendingCalls.set(id, tool);
      }
    }
    // chat.history has no tool results (it shows user and assistant messages):
    // any other call it holds has ended, so it is not shown as running.
    const pending = new Set(this.pendingCalls.values());
    for (const tool of this.tools.values()) {
      if (!tool.box.dataset.state && !pending.has(tool)) this.endTool(tool);
    }
    if (!keepScroll || atEnd) this.scrollToEnd();
    else scroller.scrollTop = top;
  }

  addHistoryMessage(message, index) {
    const role = message.role;
    if (role === "user") {
      this.addUser(contentText(message.content));
    } else if (role === "assistant") {
      const text = contentText(message.content);
      const parts = Array.isArray(message.content) ? message.content : [];
      parts.forEach((part, n) => {
        if (part && (part.type === "toolCall" || part.type === "tool_use")) {
          const key = `msg:${index}:${part.id || n}`;
          if (part.id) this.historyCalls.set(part.id, key);
          this.updateTool(this.tool(key, part.name),
            { phase: "start", args: part.arguments ?? part.input });
        }
      });
      if (text || !parts.length) this.addAssistant(text, message.stopReason);
      if (message.stopReason === "error" && message.errorMessage) {
        this.addError(message.errorMessage);
      }
    } else if (role === "toolResult" || role === "tool") {
      // A result belongs to the latest call with its id (ids can repeat across turns).
      const key = this.historyCalls.get(message.toolCallId) || `msg:${index}:result`;
      this.updateTool(this.tool(key, message.toolName), { phase: "end",
        result: message.content, isError: message.isError });
    }
  }

  /** A message of the reader's (sent here, or from a transcript being drawn):
   * the view goes to the end, where its answer will come. */
  addUser(text) {
    this.pendingCalls.clear(); // a new turn: the calls before it are not its own
    const item = el("li", { className: "msg user" },
      el("div", { className: "role" }, "You"),
      el("div", { className: "body plain" }, text));
    this.list.append(item);
    this.scrollToEnd();
    return item;
  }

  addAssistant(text, stopReason) {
    const body = el("div", { className: "body markdown" });
    body.append(renderMarkdown(text));
    // The same state a streamed reply ends with, so both read alike.
    const state = stopReason === "aborted" || stopReason === "error" ? stopReason : "final";
    const item = el("li", { className: "msg assistant", dataset: { state } },
      el("div", { className: "role" }, "Agent"), body);
    if (stopReason === "aborted") item.append(el("div", { className: "note" }, "Stopped"));
    this.list.append(item);
    return item;
  }

  addError(text) {
    const item = el("li", { className: "msg error", role: "alert" },
      el("div", { className: "role" }, "Error"),
      el("div", { className: "body plain" }, text));
    this.follow(() => this.list.append(item));
    return item;
  }

  /** A line from the page itself (not in the transcript: gone at the next redraw). */
  addNotice(text) {
    const item = el("li", { className: "msg notice", role: "status" },
      el("div", { className: "body plain" }, text));
    this.follow(() => this.list.append(item));
    return item;
  }

  /** A reply being streamed for runId (created on first use). */
  reply(runId) {
    let reply = this.replies.get(runId);
    if (!reply) {
      const body = el("div", { className: "body markdown" });
      const item = el("li", { className: "msg assistant streaming", dataset: { runId } },
        el("div", { className: "role" }, "Agent"), body);
      this.follow(() => this.list.append(item));
      reply = { item, body, text: "" };
      this.replies.set(runId, reply);
    }
    return reply;
  }

  /** Forget the reply shown for runId (a message that started no turn). */
  dropReply(runId) {
    const reply = this.replies.get(runId);
    if (!reply) return;
    reply.item.remove();
    for (const [id, shown] of this.replies) if (shown === reply) this.replies.delete(id);
  }

  updateReply(runId, text) {
    const reply = this.reply(runId);
    if (text === reply.text) return;
    reply.text = text;
    this.follow(() => reply.body.replaceChildren(renderMarkdown(text)));
  }

  /** End a streamed reply: state is "final", "aborted" or "error". */
  finishReply(runId, state, text) {
    const reply = this.reply(runId);
    if (typeof text === "string") this.updateReply(runId, text);
    reply.item.classList.remove("streaming");
    reply.item.dataset.state = state;
    if (state === "aborted") {
      this.follow(() => reply.item.append(el("div", { className: "note" }, "Stopped")));
    }
    if (state === "error" && !reply.text) reply.item.remove();
    // The run is over: a call of it that got no result event is not running any more.
    for (const [key, tool] of this.tools) {
      if (key.startsWith(`run:${runId}:`) && !tool.box.dataset.state) this.endTool(tool);
    }
    this.endPendingCalls();
  }

  /** An agent "tool" stream event of run runId: phase start | update | result (or end). */
  toolEvent(data, runId) {
    const id = data.toolCallId || `${data.name}-${this.tools.size}`;
    const key = `run:${runId}:${id}`;
    let tool = this.tools.get(key);
    if (!tool && this.pendingCalls.has(id)) {
      tool = this.pendingCalls.get(id);
      this.pendingCalls.delete(id);
      this.tools.set(key, tool);
    }
    this.follow(() => this.updateTool(tool || this.tool(key, data.name, this.replies.get(runId)),
      data));
  }

  /** The box for key, created (before the reply it belongs to, when there is one). */
  tool(key, name, reply = undefined) {
    let tool = this.tools.get(key);
    if (tool) return tool;
    const status = el("span", { className: "tool-status" }, "running");
    const args = el("pre", { className: "tool-args" });
    const result = el("pre", { className: "tool-result" });
    const resultPart = el("div", { hidden: true },
      el("div", { className: "tool-label" }, "Result"), result);
    const box = el("details", { className: "tool" },
      el("summary", {}, el("span", { className: "tool-name" }, name || "tool"), status),
      el("div", { className: "tool-label" }, "Arguments"), args, resultPart);
    const item = el("li", { className: "msg tool-activity" }, box);
    if (reply) this.list.insertBefore(item, reply.item);
    else this.list.append(item);
    tool = { box, status, args, result, resultPart };
    this.tools.set(key, tool);
    return tool;
  }

  updateTool(tool, data) {
    if (data.args !== undefined) tool.args.textContent = prettyValue(data.args);
    const result = data.result ?? data.partialResult;
    if (result !== undefined) {
      tool.result.textContent = prettyValue(result);
      tool.resultPart.hidden = false;
    }
    // OpenClaw names the terminal phase "result"; "end" closes a call the model
    // asked for without the gateway running it.
    if (data.phase === "result" || data.phase === "end") {
      this.setToolState(tool, data.isError ? "error" : "done", data.isError ? "failed" : "done");
    } else {
      this.setToolState(tool, "", "running");
    }
  }

  /** Show the calls the history ended on as ended (their run is gone). */
  endPendingCalls() {
    for (const tool of this.pendingCalls.values()) {
      if (!tool.box.dataset.state) this.endTool(tool);
    }
    this.pendingCalls.clear();
  }

  /** A call whose result is not known here: finished, not running. */
  endTool(tool) {
    this.setToolState(tool, "ended", "finished");
  }

  setToolState(tool, state, label) {
    tool.status.textContent = label;
    if (state) tool.box.dataset.state = state;
    else delete tool.box.dataset.state;
  }

  scrollToEnd() {
    const scroller = this.list;
    scroller.scrollTop = scroller.scrollHeight;
  }

  /** The view shows the end of the conversation (give or take a line). */
  atEnd() {
    const scroller = this.list;
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48;
  }

  /** Make a live change to the conversation and stay at its end if the view
   * was there: a reader who scrolled up to read is not pulled down by a
   * streaming answer, a tool call or an error (this tab's or another's). */
  follow(change) {
    const atEnd = this.atEnd();
    const result = change();
    if (atEnd) this.scrollToEnd();
    return result;
  }
}
