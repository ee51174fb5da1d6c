// A tiny element builder. Text always goes in as text nodes, never as HTML.

/** Create <tag> with attributes/properties and children (strings become text). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** The text of a transcript message's content (a string or content parts). */
export function contentText(content) {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .filter((part) => part && (part.type === "text" || part.type === "output_text"))
    .map((part) => String(part.text ?? ""))
    .join("");
}

/** Pretty text for tool arguments or results (strings parsed as JSON when they are). */
export function prettyValue(value) {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  if (Array.isArray(value) && value.every((p) => p && typeof p === "object" && "text" in p)) {
    return value.map((p) => String(p.text)).join("\n");
  }
  if (typeof value === "object" && Array.isArray(value.content)) return prettyValue(value.content);
  return JSON.stringify(value, null, 2);
}
