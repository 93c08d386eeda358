// Entry point: client-side router, navigation bar and page lifecycle. Each navigation gets an
// AbortController so a slow response from the previous page can never paint over the new one.

import { h, replace } from "./dom.js";
import * as session from "./session.js";
import { errorBox, toast } from "./components.js";
import { homePage } from "./pages/home.js";
import { browsePage } from "./pages/browse.js";
import { moviePage } from "./pages/movie.js";
import { ratingsPage } from "./pages/ratings.js";
import { adminPage } from "./pages/admin.js";
import { loginPage, signupPage } from "./pages/auth.js";

const routes = [
  { re: /^\/$/, page: homePage, title: "Home" },
  { re: /^\/browse\/?$/, page: browsePage, title: "Browse" },
  { re: /^\/movies\/(\d+)\/?$/, page: moviePage, title: "Movie" },
  { re: /^\/ratings\/?$/, page: ratingsPage, title: "My ratings", auth: true },
  { re: /^\/admin\/?$/, page: adminPage, title: "Admin", admin: true },
  { re: /^\/login\/?$/, page: loginPage, title: "Log in" },
  { re: /^\/signup\/?$/, page: signupPage, title: "Sign up" },
];

const app = document.getElementById("app");
let controller = null;

export function navigate(path, { replace: replaceState = false } = {}) {
  if (replaceState) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render();
}

function notFound(ctx) {
  ctx.setTitle("Not found");
  return h(
    "div",
    { class: "py-16 text-center" },
    h("h1", { class: "text-2xl font-bold" }, "Page not found"),
    h("p", { class: "mt-2 text-slate-600 dark:text-slate-400" }, "That page does not exist."),
    h("a", { href: "/", "data-link": "", class: "btn-primary mt-6" }, "Go home"),
  );
}

async function render() {
  if (controller) controller.abort();
  controller = new AbortController();
  const { signal } = controller;
  const path = location.pathname;
  const route = routes.find((r) => r.re.test(path));
  const params = route ? path.match(route.re).slice(1) : [];
  const ctx = {
    signal,
    params,
    query: new URLSearchParams(location.search),
    navigate,
    setTitle: (t) => {
      document.title = t ? `${t} · MovieRec` : "MovieRec";
    },
  };
  renderNav();
  closeMobileNav();
  ctx.setTitle(route ? route.title : "Not found");
  const u = session.user();
  if (route && (route.auth || route.admin) && !u) {
    navigate(`/login?next=${encodeURIComponent(path + location.search)}`, { replace: true });
    return;
  }
  if (route && route.admin && !session.isAdmin()) {
    replace(
      app,
      h(
        "div",
        { class: "py-16 text-center" },
        h("h1", { class: "text-2xl font-bold" }, "Admins only"),
        h("p", { class: "mt-2 text-slate-600 dark:text-slate-400" }, "This page needs an admin account."),
      ),
    );
    return;
  }
  try {
    const view = route ? await route.page(ctx) : notFound(ctx);
    if (signal.aborted) return;
    replace(app, view);
  } catch (err) {
    if (signal.aborted || (err && err.name === "AbortError")) return;
    replace(app, errorBox(err, () => render()));
  }
  const heading = app.querySelector("h1");
  if (heading && document.activeElement === document.body) {
    heading.setAttribute("tabindex", "-1");
  }
}

function navLink(href, text) {
  const active = href === "/" ? location.pathname === "/" : location.pathname.startsWith(href);
  return h(
    "a",
    {
      href,
      "data-link": "",
      class: `nav-link ${active ? "nav-link-active" : ""}`,
      "aria-current": active ? "page" : null,
    },
    text,
  );
}

function navItems() {
  const u = session.user();
  const items = [navLink("/", "Home"), navLink("/browse", "Browse")];
  if (u) {
    items.push(navLink("/ratings", "My ratings"));
    if (session.isAdmin()) items.push(navLink("/admin", "Admin"));
    items.push(
      h(
        "span",
        { class: "user-chip", title: `Signed in as ${u.username}` },
        h("span", { class: "avatar", "aria-hidden": "true" }, (u.username || "?")[0].toUpperCase()),
        h("span", { class: "max-w-28 truncate" }, u.username),
      ),
      h("button", { type: "button", class: "btn-secondary", id: "logout-button", onclick: doLogout }, "Log out"),
    );
  } else {
    items.push(
      h("a", { href: "/login", "data-link": "", class: "btn-secondary" }, "Log in"),
      h("a", { href: "/signup", "data-link": "", class: "btn-primary" }, "Sign up"),
    );
  }
  return items;
}

function renderNav() {
  replace(document.getElementById("nav"), h("div", { class: "hidden items-center gap-1 sm:flex sm:gap-2" }, navItems()));
  replace(document.getElementById("mobile-nav"), h("div", { class: "flex flex-col gap-1" }, navItems()));
}

function closeMobileNav() {
  document.getElementById("mobile-nav").classList.add("hidden");
  document.getElementById("menu-button").setAttribute("aria-expanded", "false");
}

async function doLogout() {
  try {
    await session.logout();
    toast("You are logged out.", "success");
  } catch (err) {
    toast(`Logout failed: ${err.message}`, "error");
  }
  navigate("/");
}

document.addEventListener("click", (e) => {
  const a = e.target.closest && e.target.closest("a[data-link]");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin) return;
  e.preventDefault();
  if (url.pathname + url.search !== location.pathname + location.search) navigate(url.pathname + url.search);
  document.getElementById("main").focus({ preventScroll: true });
  window.scrollTo(0, 0);
});

document.getElementById("menu-button").addEventListener("click", (e) => {
  const nav = document.getElementById("mobile-nav");
  const open = nav.classList.toggle("hidden") === false;
  e.currentTarget.setAttribute("aria-expanded", String(open));
});

window.addEventListener("popstate", render);
session.onChange(renderNav);

(async () => {
  try {
    await session.refresh();
  } catch (err) {
    toast(`Could not check your session: ${err.message}`, "error");
  }
  document.documentElement.dataset.ready = "true";
  render();
})();
