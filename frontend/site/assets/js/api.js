// Thin fetch wrapper: same-origin cookie auth, JSON in and out, and one error type that carries
// the services' error shape {"error": {"code", "message", "details"}} so pages can show it.

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

function describeValidation(details) {
  // FastAPI/pydantic validation details: [{loc: [...], msg: "..."}]
  if (!Array.isArray(details)) return "";
  return details
    .map((d) => {
      const loc = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body").join(".") : "";
      return loc ? `${loc}: ${d.msg}` : d.msg;
    })
    .filter(Boolean)
    .join("; ");
}

export async function api(path, { method = "GET", body, query, signal } = {}) {
  let url = path;
  if (query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== "") qs.set(k, String(v));
    }
    const s = qs.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" }, signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "network_error", "Cannot reach MovieRec. Check your connection and try again.");
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    let message = e.message || (data && typeof data.detail === "string" ? data.detail : "");
    const extra = describeValidation(e.details || (data && data.detail));
    if (!message) message = extra || `Request failed (${res.status} ${res.statusText})`;
    else if (extra && (e.code === "validation_error" || res.status === 422)) message += ` — ${extra}`;
    throw new ApiError(res.status, e.code || `http_${res.status}`, message, e.details);
  }
  return data;
}

// Lists come back either bare or wrapped ({items: [...], total}); pages want both parts.
export function asList(data, ...keys) {
  if (Array.isArray(data)) return { items: data, total: data.length };
  if (!data || typeof data !== "object") return { items: [], total: 0 };
  for (const k of [...keys, "items", "results", "movies", "data"]) {
    if (Array.isArray(data[k])) {
      const total = Number.isFinite(data.total) ? data.total : data[k].length;
      return { items: data[k], total };
    }
  }
  return { items: [], total: 0 };
}
