// The conversation pane: history, streamed replies, tool activity, errors.

import { contentText, el, prettyValue } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

export class ChatView {
  constructor(list) {
    this.list = list;
    this.replies = new Map(); // runId -> {item, body, text}
    this.tools = new Map(); // toolCallId -> {box, status, args, result}
  }

  clear() {
    this.list.replaceChildren();
    this.replies.clear();
    this.tools.clear();
  }

  /** Show a transcript (chat.history's messages, oldest first). */
  showHistory(messages) {
    this.clear();
    for (const message of messages) this.addHistoryMessage(message);
    this.scrollToEnd();
  }

  addHistoryMessage(message) {
    const role = message.role;
    if (role === "user") {
      this.addUser(contentText(message.content));
    } else if (role === "assistant") {
      const text = contentText(message.content);
      const parts = Array.isArray(message.content) ? message.content : [];
      for (const part of parts) {
        if (part && (part.type === "toolCall" || part.type === "tool_use")) {
          this.toolEvent({ phase: "start", name: part.name, toolCallId: part.id,
            args: part.arguments ?? part.input });
        }
      }
      if (text || !parts.length) this.addAssistant(text, message.stopReason);
      if (message.stopReason === "error" && message.errorMessage) {
        this.addError(message.errorMessage);
      }
    } else if (role === "toolResult" || role === "tool") {
      this.toolEvent({ phase: "end", toolCallId: message.toolCallId, name: message.toolName,
        result: message.content, isError: message.isError });
    }
  }

  addUser(text) {
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
    const item = el("li", { className: "msg assistant" },
      el("div", { className: "role" }, "Agent"), body);
    if (stopReason === "aborted") item.append(el("div", { className: "note" }, "Stopped"));
    this.list.append(item);
    return item;
  }

  addError(text) {
    const item = el("li", { className: "msg error", role: "alert" },
      el("div", { className: "role" }, "Error"),
      el("div", { className: "body plain" }, text));
    this.list.append(item);
    this.scrollToEnd();
    return item;
  }

  /** A reply being streamed for runId (created on first use). */
  reply(runId) {
    let reply = this.replies.get(runId);
    if (!reply) {
      const body = el("div", { className: "body markdown" });
      const item = el("li", { className: "msg assistant streaming", dataset: { runId } },
        el("div", { className: "role" }, "Agent"), body);
      this.list.append(item);
      reply = { item, body, text: "" };
      this.replies.set(runId, reply);
    }
    return reply;
  }

  updateReply(runId, text) {
    const reply = this.reply(runId);
    if (text === reply.text) return;
    reply.text = text;
    reply.body.replaceChildren(renderMarkdown(text));
    this.scrollToEnd();
  }

  /** End a streamed reply: state is "final", "aborted" or "error". */
  finishReply(runId, state, text) {
    const reply = this.reply(runId);
    if (typeof text === "string") this.updateReply(runId, text);
    reply.item.classList.remove("streaming");
    reply.item.dataset.state = state;
    if (state === "aborted") reply.item.append(el("div", { className: "note" }, "Stopped"));
    if (state === "error" && !reply.text) reply.item.remove();
  }

  /** An agent "tool" stream event: phase start | update | result (or end). */
  toolEvent(data, runId = undefined) {
    const id = data.toolCallId || `${data.name}-${this.tools.size}`;
    let tool = this.tools.get(id);
    if (!tool) {
      const status = el("span", { className: "tool-status" }, "running");
      const args = el("pre", { className: "tool-args" });
      const result = el("pre", { className: "tool-result" });
      const box = el("details", { className: "tool" },
        el("summary", {}, el("span", { className: "tool-name" }, data.name || "tool"), status),
        el("div", { className: "tool-label" }, "Arguments"), args,
        el("div", { className: "tool-label" }, "Result"), result);
      const item = el("li", { className: "msg tool-activity" }, box);
      const reply = runId ? this.replies.get(runId) : undefined;
      if (reply) this.list.insertBefore(item, reply.item);
      else this.list.append(item);
      tool = { box, status, args, result };
      this.tools.set(id, tool);
    }
    if (data.args !== undefined) tool.args.textContent = prettyValue(data.args);
    const result = data.result ?? data.partialResult;
    if (result !== undefined) tool.result.textContent = prettyValue(result);
    // OpenClaw names the terminal phase "result"; "end" closes a call the model
    // asked for without the gateway running it.
    if (data.phase === "result" || data.phase === "end") {
      tool.status.textContent = data.isError ? "failed" : "done";
      tool.box.dataset.state = data.isError ? "error" : "done";
    }
    this.scrollToEnd();
  }

  scrollToEnd() {
    const scroller = this.list;
    scroller.scrollTop = scroller.scrollHeight;
  }
}
