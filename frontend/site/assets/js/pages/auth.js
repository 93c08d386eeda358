// Log in and sign up. Errors from the API (wrong password, taken username, weak password) are
// shown next to the form, never swallowed.

import { h, replace } from "../dom.js";
import * as session from "../session.js";
import { toast } from "../components.js";

function safeNext(ctx) {
  const next = ctx.query.get("next") || "/";
  // Only same-site paths: "//evil.example" or "https://..." would be an open redirect.
  return next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

function input(id, label, attrs, hint) {
  return h(
    "div",
    { class: "space-y-1" },
    h("label", { for: id, class: "block text-sm font-semibold" }, label),
    h("input", { id, class: "input w-full", ...attrs }),
    hint ? h("p", { class: "text-xs text-slate-500 dark:text-slate-400", id: `${id}-hint` }, hint) : null,
  );
}

function authForm(ctx, { title, subtitle, submitText, fields, onSubmit, footer, pageId }) {
  const error = h("div", { class: "form-error", role: "alert", "aria-live": "assertive" });
  const button = h("button", { type: "submit", class: "btn-primary w-full justify-center" }, submitText);
  const form = h(
    "form",
    {
      class: "space-y-4",
      novalidate: false,
      onsubmit: async (e) => {
        e.preventDefault();
        replace(error);
        error.classList.remove("visible");
        button.disabled = true;
        const original = button.textContent;
        button.textContent = "Please wait…";
        try {
          await onSubmit(new FormData(form));
          ctx.navigate(safeNext(ctx), { replace: true });
        } catch (err) {
          replace(error, err.message || String(err));
          error.classList.add("visible");
        } finally {
          button.disabled = false;
          button.textContent = original;
        }
      },
    },
    fields,
    error,
    button,
  );
  return h(
    "div",
    { class: "mx-auto max-w-md", dataset: { page: pageId } },
    h(
      "div",
      { class: "rounded-3xl border border-slate-200 bg-white p-6 shadow-sm sm:p-8 dark:border-slate-800 dark:bg-slate-900" },
      h("h1", { class: "text-2xl font-extrabold tracking-tight" }, title),
      h("p", { class: "mb-6 mt-1 text-sm text-slate-600 dark:text-slate-400" }, subtitle),
      form,
      h("p", { class: "mt-6 text-center text-sm text-slate-600 dark:text-slate-400" }, footer),
    ),
  );
}

export async function loginPage(ctx) {
  if (session.user()) ctx.navigate(safeNext(ctx), { replace: true });
  return authForm(ctx, {
    pageId: "login",
    title: "Welcome back",
    subtitle: "Log in to see your recommendations.",
    submitText: "Log in",
    fields: [
      input("login-username", "Username", { name: "username", autocomplete: "username", required: true, autofocus: true }),
      input("login-password", "Password", { name: "password", type: "password", autocomplete: "current-password", required: true }),
    ],
    onSubmit: async (fd) => {
      await session.login(String(fd.get("username")).trim(), String(fd.get("password")));
      toast("Logged in.", "success");
    },
    footer: ["New here? ", h("a", { href: `/signup${location.search}`, "data-link": "", class: "link" }, "Create an account")],
  });
}

export async function signupPage(ctx) {
  if (session.user()) ctx.navigate("/", { replace: true });
  return authForm(ctx, {
    pageId: "signup",
    title: "Create your account",
    subtitle: "Rate 5 movies and MovieRec starts picking for you.",
    submitText: "Sign up",
    fields: [
      input("signup-username", "Username", { name: "username", autocomplete: "username", required: true, minlength: "3", maxlength: "32", autofocus: true }, "3–32 characters: letters, digits, dot, dash or underscore."),
      input("signup-password", "Password", { name: "password", type: "password", autocomplete: "new-password", required: true, minlength: "8" }, "At least 8 characters."),
      input("signup-confirm", "Confirm password", { name: "confirm", type: "password", autocomplete: "new-password", required: true }),
    ],
    onSubmit: async (fd) => {
      if (fd.get("password") !== fd.get("confirm")) throw new Error("The two passwords do not match.");
      await session.register(String(fd.get("username")).trim(), String(fd.get("password")));
      toast("Welcome to MovieRec!", "success");
    },
    footer: ["Already have an account? ", h("a", { href: `/login${location.search}`, "data-link": "", class: "link" }, "Log in")],
  });
}
