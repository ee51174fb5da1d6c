// What the browser keeps: the gateway token (this tab only, unless the person
// asks to remember it), and the last agent/session (not secret).

const SECRET_KEY = "openclaw.controlUi.secret";
const PLACE_KEY = "openclaw.controlUi.place";

function read(storage, key) {
  try {
    return JSON.parse(storage.getItem(key) || "null");
  } catch {
    return null;
  }
}

/** The saved credentials ({kind, secret, remember}) or null. */
export function loadSecret() {
  const session = read(sessionStorage, SECRET_KEY);
  if (session && session.secret) return { ...session, remember: false };
  const local = read(localStorage, SECRET_KEY);
  if (local && local.secret) return { ...local, remember: true };
  return null;
}

/** Keep a token for this tab (or on this browser when remembered). Passwords
 * are never stored: they stay in memory, as OpenClaw's own UI does. */
export function saveSecret({ kind, secret, remember }) {
  forgetSecret();
  if (kind !== "token") return;
  const storage = remember ? localStorage : sessionStorage;
  storage.setItem(SECRET_KEY, JSON.stringify({ kind, secret }));
}

export function forgetSecret() {
  sessionStorage.removeItem(SECRET_KEY);
  localStorage.removeItem(SECRET_KEY);
}

/** The last {agentId, sessionKey} this browser had open. */
export function loadPlace() {
  return read(localStorage, PLACE_KEY) || {};
}

export function savePlace(place) {
  localStorage.setItem(PLACE_KEY, JSON.stringify(place));
}
