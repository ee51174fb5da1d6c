// Untrusted text (model output, tool results) to safe DOM: Markdown through
// marked, then DOMPurify (which drops scripts, event handlers, javascript:
// URLs and anything not plain content), then highlight.js on code blocks.

import { Marked } from "../vendor/marked-18.3.0/marked.esm.js";
import DOMPurify from "../vendor/dompurify-3.5.0/purify.es.mjs";
import hljs from "../vendor/highlight.js-11.11.1/core.min.js";
import bash from "../vendor/highlight.js-11.11.1/languages/bash.min.js";
import css from "../vendor/highlight.js-11.11.1/languages/css.min.js";
import diff from "../vendor/highlight.js-11.11.1/languages/diff.min.js";
import javascript from "../vendor/highlight.js-11.11.1/languages/javascript.min.js";
import json from "../vendor/highlight.js-11.11.1/languages/json.min.js";
import python from "../vendor/highlight.js-11.11.1/languages/python.min.js";
import sql from "../vendor/highlight.js-11.11.1/languages/sql.min.js";
import typescript from "../vendor/highlight.js-11.11.1/languages/typescript.min.js";
import xml from "../vendor/highlight.js-11.11.1/languages/xml.min.js";
import yaml from "../vendor/highlight.js-11.11.1/languages/yaml.min.js";

const LANGUAGES = { bash, css, diff, javascript, json, python, sql, typescript, xml, yaml };
for (const [name, grammar] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, grammar);
const ALIASES = { sh: "bash", shell: "bash", js: "javascript", ts: "typescript", py: "python",
  html: "xml", yml: "yaml", console: "bash" };

const marked = new Marked({ gfm: true, breaks: true, async: false });

const purify = DOMPurify(window);
const SAFE_URL = /^(?:https?:|mailto:|#)/i;
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    const href = node.getAttribute("href") || "";
    if (!SAFE_URL.test(href.trim())) node.removeAttribute("href");
    if (!href.trim().startsWith("#")) node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
  if (node.tagName === "IMG") {
    // Images from model output could leak the conversation to a third party;
    // the page's policy blocks them anyway. Show the alt text instead.
    const alt = document.createElement("span");
    alt.className = "img-alt";
    alt.textContent = node.getAttribute("alt") ? `[image: ${node.getAttribute("alt")}]` : "[image]";
    node.replaceWith(alt);
  }
});

const PURIFY_OPTIONS = {
  USE_PROFILE: { html: true },
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "option", "iframe",
    "svg", "math", "video", "audio", "source", "picture", "dialog", "details"],
  // background, poster and ping make the browser fetch a URL (an image, or a
  // POST on click): model output must not reach third parties that way.
  FORBID_ATTR: ["style", "class", "id", "srcset", "action", "formaction", "background", "poster",
    "ping"],
  ALLOW_DATA_ATTR: false,
  ADD_ATTR: ["data-lang"],
  RETURN_DOM_FRAGMENT: true,
};

/** Markdown text -> a sanitised DocumentFragment with highlighted code. */
export function renderMarkdown(text) {
  const html = marked.parse(String(text ?? ""));
  const fragment = purify.sanitize(html, PURIFY_OPTIONS);
  for (const code of fragment.querySelectorAll("pre > code")) highlight(code);
  return fragment;
}

function highlight(code) {
  const lang = code.dataset.lang;
  if (!lang) return;
  let result;
  try {
    result = hljs.highlight(code.textContent, { language: lang, ignoreIllegals: true });
  } catch {
    return;
  }
  // highlight.js escapes the source; sanitise its markup all the same.
  const spans = purify.sanitize(result.value, { ALLOWED_TAGS: ["span"], ALLOWED_ATTR: ["class"],
    RETURN_DOM_FRAGMENT: true });
  code.replaceChildren(spans);
  code.classList.add("hljs", `language-${lang}`);
}

// Keep a fence's language as data-lang (the sanitiser drops classes); only
// the names of the bundled grammars are ever written there.
marked.use({
  renderer: {
    code({ text, lang }) {
      const name = ALIASES[(lang || "").toLowerCase()] || (lang || "").toLowerCase();
      const known = Object.hasOwn(LANGUAGES, name) ? name : "";
      const escaped = text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
      return `<pre><code data-lang="${known}">${escaped}</code></pre>\n`;
    },
  },
});
