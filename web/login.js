// Sign-in form: POST /api/auth/login, then to the page the user came from (same origin only).
import { ApiError, api } from "./api.js";

const form = document.getElementById("login-form");
const error = document.getElementById("login-error");
const submit = document.getElementById("login-submit");

function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  // Only a path on this site: "//host" or "/\host" would leave it.
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) {
    error.textContent = "Enter your username and password.";
    error.hidden = false;
    return;
  }
  submit.disabled = true;
  error.hidden = true;
  try {
    await api.post("/api/auth/login", { username, password });
    location.assign(nextPath());
  } catch (err) {
    error.textContent = err instanceof ApiError ? err.detail : "Could not reach the server.";
    error.hidden = false;
    form.password.select();
  } finally {
    submit.disabled = false;
  }
});
// The button starts disabled in the HTML: a click before this module ran would submit the form natively
// (a GET with the password in the URL).
submit.disabled = false;
