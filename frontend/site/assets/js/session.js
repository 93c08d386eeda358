// Who is signed in. The token itself lives in an httpOnly cookie the page cannot read, so the
// session is whatever GET /api/auth/session says (200 for anonymous visitors too, so a page
// load logs no error); it is refreshed after login, signup and logout.

import { api, ApiError } from "./api.js";

let current = null;
const listeners = new Set();

export function user() {
  return current;
}

export function isAdmin() {
  return Boolean(current && current.role === "admin");
}

export function onChange(fn) {
  listeners.add(fn);
}

function set(u) {
  current = u;
  for (const fn of listeners) fn(current);
}

function normalise(me) {
  if (!me || typeof me !== "object") return null;
  const u = me.user && typeof me.user === "object" ? me.user : me;
  return {
    userId: u.userId ?? u.user_id ?? u.id,
    username: u.username ?? u.name ?? "you",
    role: u.role ?? "user",
  };
}

export async function refresh() {
  try {
    const s = await api("/api/auth/session");
    set(s && s.authenticated ? normalise(s.user) : null);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) set(null);
    else throw err;
  }
  return current;
}

export async function login(username, password) {
  const res = await api("/api/auth/login", { method: "POST", body: { username, password } });
  const u = normalise(res);
  if (u && u.userId !== undefined) set(u);
  return refresh();
}

export async function register(username, password) {
  await api("/api/auth/register", { method: "POST", body: { username, password } });
  // Registration may or may not sign the person in; a login makes it certain.
  return login(username, password);
}

export async function logout() {
  try {
    await api("/api/auth/logout", { method: "POST" });
  } finally {
    set(null);
  }
}
