// Party Pool in a browser: protocol v1 (see docs/protocol.md), one line per
// WebSocket text message, in both directions.  Everything the server says is
// put on the page with textContent, never as HTML.

const $ = (id) => document.getElementById(id);
const enc = new TextEncoder();
const dec = new TextDecoder();

// ---- SCRAM-SHA-256 (RFC 5802, RFC 7677) with WebCrypto --------------------

// The server prepares the passkey with SASLprep (RFC 4013).  JavaScript has
// none, so this applies its mapping and NFKC: the same bytes for any passkey
// SASLprep accepts (it refuses the rest, e.g. control characters, at start-up).
export function preparePasskey(passkey) {
  return passkey
    .replace(/[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/g, "")
    .replace(/[\u00A0\u1680\u2000-\u200A\u202F\u205F\u3000]/g, " ")
    .normalize("NFKC");
}

const toB64 = (bytes) => btoa(String.fromCharCode(...bytes));
const fromB64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const textToB64 = (text) => toB64(enc.encode(text));
const b64ToText = (text) => dec.decode(fromB64(text));

async function hmac(key, message) {
  const k = await crypto.subtle.importKey(
    "raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, enc.encode(message)));
}

function attributes(message) {
  const found = {};
  for (const part of message.split(",")) found[part[0]] = part.slice(2);
  return found;
}

// One login: first() → client-first; final(server-first) → client-final;
// verify(server-final) is true only if the server proved it knows the verifier.
export function scramClient(user, passkey) {
  const nonce = toB64(crypto.getRandomValues(new Uint8Array(18)));
  const bare = `n=${user},r=${nonce}`;
  let expected = null;
  return {
    first: () => `n,,${bare}`,
    async final(serverFirst) {
      const { r, s, i } = attributes(serverFirst);
      const iterations = Number(i);
      if (!r || !r.startsWith(nonce) || r === nonce || !s || !(iterations >= 4096)) {
        throw new Error("the server's login challenge is malformed");
      }
      const base = await crypto.subtle.importKey(
        "raw", enc.encode(preparePasskey(passkey)), "PBKDF2", false, ["deriveBits"]);
      const salted = new Uint8Array(await crypto.subtle.deriveBits(
        { name: "PBKDF2", hash: "SHA-256", salt: fromB64(s), iterations }, base, 256));
      const clientKey = await hmac(salted, "Client Key");
      const storedKey = new Uint8Array(await crypto.subtle.digest("SHA-256", clientKey));
      const withoutProof = `c=biws,r=${r}`;
      const authMessage = `${bare},${serverFirst},${withoutProof}`;
      const signature = await hmac(storedKey, authMessage);
      const proof = clientKey.map((byte, n) => byte ^ signature[n]);
      expected = toB64(await hmac(await hmac(salted, "Server Key"), authMessage));
      return `${withoutProof},p=${toB64(proof)}`;
    },
    verify: (serverFinal) => expected !== null && attributes(serverFinal).v === expected,
  };
}

// ---- state -------------------------------------------------------------------

const HELP = [
  "/msg <name> <text> — a private message",
  "/online — who is here",
  "/ip — your address as the server sees it",
  "/request <text> — a request to the organisers",
  "/exit — leave",
  "//text — say text that starts with /",
  "/help — this list",
];
const ROOT_HELP = "/admin <command> — an administrator command (try /admin help)";
// BYE reasons (and ERR codes) after which trying again would only repeat them.
const FINAL = new Set([
  "auth-failed", "auth-throttled", "banned", "banned by admin", "removed by admin",
  "quit", "flooding",
]);

const state = {
  ws: null, passkey: null, asRoot: false, name: null, phase: "idle", scram: null,
  bye: null, leaving: false, retries: 0, retryTimer: null, members: new Set(),
  onlineParts: [], showOnline: false, pendingMsgs: [], sent: [], recall: 0,
  lastLive: null, skipUntil: null, historyShown: 0, shutdown: null,
};

function setStatus(text) { $("status").textContent = text; }

// ---- the log -----------------------------------------------------------------

function timeOf(date) {
  const t = document.createElement("time");
  t.dateTime = date.toISOString();
  t.textContent = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return t;
}

function addLine(kind, parts, date = new Date()) {
  const log = $("log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  const li = document.createElement("li");
  li.className = kind;
  if (date) li.append(timeOf(date));
  for (const [cls, text] of parts) {
    li.append(" "); // read and copied as words, not run together
    const span = document.createElement("span");
    if (cls) span.className = cls;
    span.textContent = text;
    li.append(span);
  }
  log.append(li);
  if (atBottom) li.scrollIntoView({ block: "end" });
  return li;
}

const say = (kind, text) => addLine(kind, [["text", text]]);

// One room event as the server sends it live, or inside a HISTORY line.
function showEvent(line, date, extra = "") {
  const [verb, rest] = split(line);
  if (verb === "CHAT") {
    const [name, text] = split(rest);
    addLine(`chat${extra}`, [["name", name], ["text", text]], date);
  } else if (verb === "NOTICE") {
    addLine(`notice${extra}`, [["name", "Notice:"], ["text", rest]], date);
  }
}

function split(text) {
  const space = text.indexOf(" ");
  return space < 0 ? [text, ""] : [text.slice(0, space), text.slice(space + 1)];
}

// ---- members -------------------------------------------------------------------

function renderMembers() {
  const list = $("member-list");
  list.replaceChildren();
  const names = [...state.members].sort((a, b) => a.localeCompare(b, undefined, { sensitivity: "base" }));
  for (const name of names) {
    const li = document.createElement("li");
    const span = document.createElement("span");
    span.textContent = name;
    li.append(span);
    if (state.asRoot && name !== state.name) {
      for (const [label, command] of [["Mute", "mute -u"], ["Kick", "remove -u"]]) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = label;
        button.setAttribute("aria-label", `${label} ${name}`);
        button.addEventListener("click", () => send(`ADMIN ${command} ${name}`));
        li.append(button);
      }
    }
    list.append(li);
  }
  $("count").textContent = String(names.length);
}

// ---- the connection ------------------------------------------------------------

function send(line) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(line);
}

function connect() {
  clearTimeout(state.retryTimer);
  state.bye = null;
  state.phase = "login";
  setStatus("Connecting…");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  state.ws = ws;
  ws.onmessage = (event) => {
    if (ws === state.ws) handle(String(event.data)).catch(loginBroken);
  };
  ws.onclose = () => { if (ws === state.ws) closed(); };
}

function loginBroken(error) {
  showLogin(`Could not log in: ${error.message}`);
  state.bye = "auth-failed";
  state.ws.close();
}

function closed() {
  state.ws = null;
  const wasChatting = state.phase === "chatting";
  state.phase = "idle";
  if (state.leaving) {
    setStatus("You left");
    say("info", "You left the chat.");
    showLogin("");
    return;
  }
  if (FINAL.has(state.bye)) {
    setStatus("Disconnected");
    if (wasChatting) say("error", `Disconnected: ${state.bye}`);
    showLogin(state.bye === "auth-failed" || state.bye === "auth-throttled"
      ? $("login-error").textContent || "Wrong passkey."
      : `Disconnected: ${state.bye}`);
    return;
  }
  const delay = Math.min(30, 2 ** state.retries) * (0.5 + Math.random() / 2);
  state.retries += 1;
  const why = state.bye ? `Disconnected (${state.bye})` : "Connection lost";
  setStatus(`${why} — reconnecting in ${Math.ceil(delay)} s`);
  if (wasChatting) say("error", `${why}; reconnecting…`);
  state.retryTimer = setTimeout(connect, delay * 1000);
}

async function handle(line) {
  const [verb, rest] = split(line);
  switch (verb) {
    case "HELLO":
      $("server-name").textContent = split(rest)[1];
      state.scram = scramClient(state.asRoot ? "root" : "chat", state.passkey);
      send(`AUTH SCRAM-SHA-256 ${textToB64(state.scram.first())}`);
      setStatus("Logging in…");
      break;
    case "AUTH-CHALLENGE":
      state.phase = "challenge";
      send(`AUTH-RESPONSE ${textToB64(await state.scram.final(b64ToText(rest)))}`);
      break;
    case "AUTH-OK":
      if (!state.scram.verify(b64ToText(rest))) {
        throw new Error("the server could not prove it knows the passkey");
      }
      state.phase = "naming";
      send(`NICK ${state.name}`);
      break;
    case "OK": {
      const [what, arg] = split(rest);
      if (what === "NICK") joinedRoom(arg);
      else if (what === "MSG") {
        addLine("private", [["name", `to ${arg}:`], ["text", state.pendingMsgs.shift() ?? ""]]);
      } else if (what === "REQUEST") say("info", `Request #${arg} stored.`);
      break;
    }
    case "ERR": error(...split(rest)); break;
    case "BYE": state.bye = rest; break;
    case "PING": send(rest ? `PONG ${rest}` : "PONG"); break;
    case "CHAT": case "NOTICE":
      state.lastLive = line;
      showEvent(line, new Date());
      break;
    case "HISTORY": history(rest); break;
    case "HISTORY-END":
      if (state.historyShown) {
        const n = state.historyShown;
        addLine("divider", [["text", `${n} earlier message${n === 1 ? "" : "s"} above`]], null);
      }
      state.historyShown = 0;
      state.skipUntil = null;
      break;
    case "JOINED":
      state.members.add(rest);
      renderMembers();
      say("event", `${rest} joined`);
      break;
    case "LEFT": {
      const [name, reason] = split(rest);
      state.members.delete(name);
      renderMembers();
      say("event", `${name} left (${reason})`);
      break;
    }
    case "PRIVATE": {
      const [from, text] = split(rest);
      addLine("private", [["name", `from ${from}:`], ["text", text]]);
      break;
    }
    case "ONLINE-PART": state.onlineParts.push(...rest.split(" ")); break;
    case "ONLINE": online(rest); break;
    case "IP": say("info", `Your address as the server sees it: ${rest}`); break;
    case "SHUTDOWN": shutdown(...split(rest)); break;
    case "REQUESTED": {
      const [id, more] = split(rest);
      const [name, text] = split(more);
      addLine("notice", [["name", `Request #${id} from ${name}:`], ["text", text]]);
      break;
    }
    case "ADMIN-OUT": say("admin", rest); break;
    case "ADMIN-END": if (rest !== "0") say("error", `(failed: exit status ${rest})`); break;
    default: break; // a verb this page does not know: ignored, as the protocol says
  }
}

function joinedRoom(name) {
  state.name = name;
  state.phase = "chatting";
  state.retries = 0;
  state.members = new Set([name]);
  $("login").hidden = true;
  $("chat").hidden = false;
  clearInterval(state.shutdown); // a countdown from before a restart is over
  $("banner").hidden = true;
  setStatus(`Connected as ${name}`);
  say("info", `You are in as ${name}. Type /help for commands.`);
  state.skipUntil = state.lastLive;
  send("HISTORY");
  send("ONLINE");
  $("message").focus();
}

function history(rest) {
  const [, more] = split(rest);
  const [time, event] = split(more);
  if (state.skipUntil !== null) { // after a reconnect: only what came since
    if (event === state.skipUntil) state.skipUntil = null;
    return;
  }
  state.historyShown += 1;
  showEvent(event, new Date(time), " history");
}

function online(rest) {
  const [, names] = split(rest);
  const all = [...state.onlineParts, ...(names ? names.split(" ") : [])];
  state.onlineParts = [];
  state.members = new Set(all);
  renderMembers();
  if (state.showOnline) say("info", `${all.length} online: ${all.join(", ")}`);
  state.showOnline = false;
}

function error(code, text) {
  if (state.phase === "naming" && code.startsWith("nick-")) {
    showLogin(text, true); // same connection: just another name
    return;
  }
  if (code === "auth-failed" || code === "auth-throttled") {
    $("login-error").textContent = code === "auth-failed"
      ? (state.asRoot ? "Wrong root password." : "Wrong passkey.") : text;
    return;
  }
  if (code === "no-such-user" || code === "muted" || code === "bad-syntax") {
    state.pendingMsgs.shift(); // a refused /msg (harmless if it was a SAY)
  }
  if (state.phase === "chatting") say("error", `${text} (${code})`);
  else $("login-error").textContent = text;
}

function shutdown(seconds, text) {
  clearInterval(state.shutdown);
  const ends = Date.now() + Number(seconds) * 1000;
  const banner = $("banner");
  const tick = () => {
    const left = Math.max(0, Math.round((ends - Date.now()) / 1000));
    banner.textContent = `The server closes in ${left} s${text ? `: ${text}` : ""}`;
    if (!left) clearInterval(state.shutdown);
  };
  banner.hidden = false;
  tick();
  state.shutdown = setInterval(tick, 1000);
}

// ---- the forms -------------------------------------------------------------------

function showLogin(message, nameOnly = false) {
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("join").disabled = false;
  for (const id of ["passkey", "as-root"]) $(id).closest("p").hidden = nameOnly;
  $("passkey").required = !nameOnly;
  rootChanged();
  (nameOnly ? $("name") : $("passkey")).focus();
}

function rootChanged() {
  const asRoot = $("as-root").checked && !$("as-root").closest("p").hidden;
  $("name-row").hidden = asRoot;
  $("name").required = !asRoot;
  $("passkey-label").textContent = asRoot ? "Root password" : "Passkey";
}

function submitLogin(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  if (state.phase === "naming") { // the passkey was accepted; only the name was not
    state.name = $("name").value;
    send(`NICK ${state.name}`);
    return;
  }
  state.asRoot = $("as-root").checked;
  state.name = state.asRoot ? "root" : $("name").value;
  state.passkey = $("passkey").value; // kept in memory only, to log in again after a drop
  $("passkey").value = "";
  state.leaving = false;
  state.retries = 0;
  $("join").disabled = true;
  connect();
}

function command(text) {
  if (!text.startsWith("/") || text.startsWith("//")) {
    const said = text.startsWith("//") ? text.slice(1) : text;
    send(`SAY ${said}`);
    addLine("chat mine", [["name", state.name], ["text", said]]);
    return;
  }
  const [verb, rest] = split(text.slice(1));
  switch (verb.toLowerCase()) {
    case "help":
      for (const line of state.asRoot ? [ROOT_HELP, ...HELP] : HELP) say("info", line);
      break;
    case "exit": case "quit": state.leaving = true; send("QUIT"); break;
    case "online": state.showOnline = true; send("ONLINE"); break;
    case "ip": send("IP"); break;
    case "request": send(`REQUEST ${rest}`); break;
    case "admin": send(`ADMIN ${rest}`); break;
    case "msg": state.pendingMsgs.push(split(rest)[1]); send(`MSG ${rest}`); break;
    default: say("error", `Unknown command /${verb}; try /help`);
  }
}

function submitMessage(event) {
  event.preventDefault();
  const input = $("message");
  const text = input.value;
  if (!text.trim()) return;
  state.sent.push(text);
  state.recall = state.sent.length;
  input.value = "";
  command(text);
}

function recallSent(event) { // ↑ and ↓ bring back what was sent before
  if (event.key !== "ArrowUp" && event.key !== "ArrowDown") return;
  const step = event.key === "ArrowUp" ? -1 : 1;
  const at = Math.min(state.sent.length, Math.max(0, state.recall + step));
  if (at === state.recall) return;
  event.preventDefault();
  state.recall = at;
  event.target.value = state.sent[at] ?? "";
}

function start() {
  if (!window.isSecureContext || !crypto.subtle) {
    $("insecure").hidden = false;
    setStatus("Needs HTTPS");
    return;
  }
  $("login").addEventListener("submit", submitLogin);
  $("as-root").addEventListener("change", rootChanged);
  $("composer").addEventListener("submit", submitMessage);
  $("message").addEventListener("keydown", recallSent);
  showLogin("");
}

start();
