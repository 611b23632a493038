/*
 * cluster-admin stand-in: what a module UI (and @nethserver/ns8-ui-lib) uses of
 * NS8's cluster-admin, backed by the api-server stand-in (dev/ns8dev/apiserver.py).
 *
 * - window.core (also window.ns8): an event bus like cluster-admin's root Vue
 *   instance: $root (itself), $on/$once/$off/$emit, apiUrl, $i18n.locale, $t, $tc,
 *   $route and $router over this page's location hash (#/apps/<id>?page=...).
 * - localStorage "loginInfo" = {username, token, expire}: ns8-ui-lib's TaskService
 *   reads the token from there to post tasks to `${window.parent.core.$root.apiUrl}`.
 * - Task events as core/ui/src/mixins/notification.js emits them, from the /ws
 *   progress stream (with the same 8.1 s status polling fallback for running tasks):
 *     <action>-validation-failed-<eventId> (errorList, taskContext)
 *     <action>-aborted-<eventId>           (taskResult, taskContext)
 *     <action>-validation-ok-<eventId>     (task)
 *     <action>-completed-<eventId>         (taskContext, taskResult)
 *     <action>-progress-<eventId>          (progress, taskContext), with extra.isProgressNotified
 * - Toast notifications for tasks whose extra.isNotificationHidden is false, and
 *   for every failed task.
 */
(function () {
  "use strict";

  const API_URL = window.location.origin + "/api";
  const STORAGE_KEY = "loginInfo";
  const POLL_PERIOD = 8100; // two agent heartbeats, as cluster-admin
  const TERMINAL = ["completed", "aborted", "validation-failed"];

  // ------------------------------------------------------------ event bus

  function Bus() {
    this._handlers = {};
  }
  Bus.prototype.$on = function (name, fn) {
    (this._handlers[name] = this._handlers[name] || []).push(fn);
    return this;
  };
  Bus.prototype.$once = function (name, fn) {
    const self = this;
    function wrapper() {
      self.$off(name, wrapper);
      return fn.apply(self, arguments);
    }
    wrapper.fn = fn;
    return this.$on(name, wrapper);
  };
  Bus.prototype.$off = function (name, fn) {
    if (name === undefined) {
      this._handlers = {};
      return this;
    }
    const list = this._handlers[name];
    if (!list) {
      return this;
    }
    if (fn === undefined) {
      delete this._handlers[name];
      return this;
    }
    this._handlers[name] = list.filter((h) => h !== fn && h.fn !== fn);
    if (!this._handlers[name].length) {
      delete this._handlers[name];
    }
    return this;
  };
  Bus.prototype.$emit = function (name) {
    const args = Array.prototype.slice.call(arguments, 1);
    for (const handler of (this._handlers[name] || []).slice()) {
      try {
        handler.apply(this, args);
      } catch (err) {
        console.error(`handler of ${name} failed`, err);
      }
    }
    return this;
  };
  Bus.prototype.listenerCount = function (name) {
    return (this._handlers[name] || []).length;
  };

  // ------------------------------------------------------------ i18n (core strings)

  const MESSAGES = {
    en: {
      "task.completed": "Completed",
      "common.processing": "Processing...",
      "common.see_details": "See details",
      "error.generic_error": "Something went wrong",
      "error.validation_error": "Validation error",
      "error.cannot_retrieve_task_status": "Cannot retrieve task status",
      "error.network_error": "Network error",
      "error.401": "Invalid authentication",
      "error.403": "Operation not authorized",
      "error.404": "Resource not found",
      "login.failed": "Login failed: {message}",
    },
    it: {
      "task.completed": "Completato",
      "common.processing": "Elaborazione...",
      "common.see_details": "Vedi dettagli",
      "error.generic_error": "Qualcosa è andato storto",
      "error.validation_error": "Errore di validazione",
      "error.cannot_retrieve_task_status": "Impossibile leggere lo stato del task",
      "error.network_error": "Errore di rete",
      "error.401": "Autenticazione non valida",
      "error.403": "Operazione non autorizzata",
      "error.404": "Risorsa non trovata",
      "login.failed": "Accesso non riuscito: {message}",
    },
  };

  const query = new URLSearchParams(window.location.search);
  const locale = ((query.get("lang") || navigator.language || "en").substring(0, 2) in MESSAGES)
    ? (query.get("lang") || navigator.language || "en").substring(0, 2)
    : "en";

  function translate(key, params) {
    let text = (MESSAGES[locale] && MESSAGES[locale][key]) || MESSAGES.en[key] || key;
    for (const [name, value] of Object.entries(params || {})) {
      text = text.split(`{${name}}`).join(String(value));
    }
    return text;
  }

  // ------------------------------------------------------------ routing over the hash

  function parseHash() {
    const hash = window.location.hash.replace(/^#/, "") || "/";
    const [path, search] = hash.split("?");
    const queryParams = {};
    new URLSearchParams(search || "").forEach((value, key) => {
      queryParams[key] = value;
    });
    return { path: path || "/", fullPath: hash, query: queryParams, hash: "" };
  }

  function appIdFromHash() {
    const match = /^#\/apps\/([^/?#]+)/.exec(window.location.hash);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // ------------------------------------------------------------ core

  const core = new Bus();
  core.$root = core;
  core.apiUrl = API_URL;
  core.$i18n = { locale };
  core.$t = translate;
  core.$tc = (key, count, params) => translate(key, Object.assign({ count }, params));
  Object.defineProperty(core, "$route", { get: parseHash, enumerable: true });
  core.$router = {
    push(path) {
      window.location.hash = path;
      return Promise.resolve();
    },
    replace(path) {
      const url = window.location.pathname + window.location.search + "#" + path;
      window.history.replaceState(window.history.state, "", url);
      return Promise.resolve();
    },
  };
  core.notifications = [];
  // nothing to configure here, cluster-admin binds its keyboard shortcuts to the app window
  core.$on("configureKeyboardShortcuts", () => {});

  window.core = core;
  window.ns8 = core; // newer module UIs read window.parent.ns8
  window.CONFIG = {
    PRODUCT_NAME: "NethServer 8",
    API_ENDPOINT: window.location.host + "/api",
    API_SCHEME: window.location.protocol.replace(":", ""),
    WEBSOCKET_ENDPOINT: window.location.host + "/ws",
  };

  // ------------------------------------------------------------ api

  function loginInfo() {
    try {
      return JSON.parse(localStorage.getItem(STORAGE_KEY));
    } catch (err) {
      return null;
    }
  }

  function authHeaders() {
    const info = loginInfo();
    return info && info.token ? { Authorization: `Bearer ${info.token}` } : {};
  }

  async function apiGet(path) {
    const response = await fetch(`${API_URL}/${path}`, { headers: authHeaders() });
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    return { status: response.status, body };
  }

  async function login(username, password) {
    const response = await fetch(`${API_URL}/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    let body = {};
    try {
      body = await response.json();
    } catch (err) {
      body = {};
    }
    if (response.status !== 200 || !body.token) {
      throw new Error(body.message || `HTTP ${response.status}`);
    }
    localStorage.setItem(STORAGE_KEY, JSON.stringify({ username, token: body.token, expire: body.expire }));
  }

  async function tokenIsValid() {
    const info = loginInfo();
    if (!info || !info.token) {
      return false;
    }
    if (info.expire && Date.parse(info.expire) < Date.now()) {
      return false;
    }
    // any authenticated GET: 401 for a bad token, 400 ("redis: nil") for a good one
    const { status } = await apiGet("cluster/task/00000000-0000-0000-0000-000000000000/status");
    return status !== 401;
  }

  // ------------------------------------------------------------ task events

  const contexts = new Map(); // taskId -> context
  const pendingContexts = new Map(); // taskId -> Promise
  const taskStates = new Map(); // taskId -> {validated, terminal, timer}
  const queues = new Map(); // taskId -> Promise chain: one message at a time per task

  function eventName(context, result) {
    const id = context.extra && context.extra.eventId ? "-" + context.extra.eventId : "";
    return `${context.action}-${result}${id}`;
  }

  async function fetchContext(taskPath, taskId) {
    if (contexts.has(taskId)) {
      return contexts.get(taskId);
    }
    let request = pendingContexts.get(taskId);
    if (!request) {
      request = apiGet(`${taskPath}/context`).finally(() => pendingContexts.delete(taskId));
      pendingContexts.set(taskId, request);
    }
    const { status, body } = await request;
    if (status !== 200 || !body || !body.data) {
      console.warn("task context not found, skipping", taskId, status);
      return null;
    }
    contexts.set(taskId, body.data.context);
    return body.data.context;
  }

  async function fetchStatus(taskPath) {
    // the agent stores the result before it publishes the final status; retry anyway
    for (let attempt = 0; attempt < 20; attempt++) {
      const { status, body } = await apiGet(`${taskPath}/status`);
      if (status === 200 && body && body.data) {
        return body.data;
      }
      if (status !== 400) {
        throw new Error(`HTTP ${status}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new Error("task status not available");
  }

  function onProgressMessage(name, payload) {
    const taskPath = name.replace(/^progress\//, "");
    const taskId = taskPath.split("/").pop();
    const previous = queues.get(taskId) || Promise.resolve();
    const next = previous
      .then(() => handleProgress(taskPath, taskId, payload || {}))
      .catch((err) => console.error("task message handling failed", err));
    queues.set(taskId, next);
  }

  async function pollStatus(taskPath, taskId, payload) {
    const state = taskStates.get(taskId);
    if (!state || state.terminal) {
      return;
    }
    const { status, body } = await apiGet(`${taskPath}/status`);
    if (status === 200 && body && body.data) {
      const code = body.data.exit_code;
      const synthesized = {
        progress: 100,
        status: code === 0 ? "completed" : code === 10 ? "validation-failed" : "aborted",
      };
      onProgressMessage("progress/" + taskPath, synthesized);
    } else {
      state.timer = setTimeout(() => pollStatus(taskPath, taskId, payload), POLL_PERIOD);
    }
  }

  async function handleProgress(taskPath, taskId, payload) {
    let state = taskStates.get(taskId);
    if (state && state.terminal) {
      return; // a late message of a finished task
    }
    const context = await fetchContext(taskPath, taskId);
    if (!context) {
      return;
    }
    if (!state) {
      state = { validated: false, terminal: false, timer: null };
      taskStates.set(taskId, state);
    }
    clearTimeout(state.timer);
    state.timer = null;
    const status = payload.status;
    const progress = payload.progress;
    let result = null;

    if (TERMINAL.includes(status)) {
      state.terminal = true;
      try {
        result = await fetchStatus(taskPath);
      } catch (err) {
        console.error(err);
        showToast({
          id: taskId + "-status",
          type: "error",
          title: translate("error.cannot_retrieve_task_status"),
          description: String(err.message || err),
        });
        return;
      }
      if (status === "validation-failed") {
        core.$emit(eventName(context, "validation-failed"), result.output, context);
      } else if (status === "aborted") {
        core.$emit(eventName(context, "aborted"), result, context);
      }
    }

    if (context.parent) {
      return; // a subtask: its parent's notification tells the story
    }

    if ((status === "running" || status === "completed") && progress > 0 && !state.validated) {
      state.validated = true;
      core.$emit(eventName(context, "validation-ok"), {
        context,
        status,
        progress,
        validated: true,
      });
    }

    if (status === "running") {
      state.timer = setTimeout(() => pollStatus(taskPath, taskId, payload), POLL_PERIOD);
    }

    if (result && status === "completed") {
      core.$emit(eventName(context, "completed"), context, result);
    }

    const extra = context.extra || {};
    if (extra.isProgressNotified) {
      core.$emit(eventName(context, "progress"), progress, context);
    }

    let type = "info";
    let description = payload.description || extra.description || translate("common.processing");
    if (status === "completed") {
      type = "success";
      description = translate("task.completed");
    } else if (status === "aborted") {
      type = "error";
      description = translate("error.generic_error");
    } else if (status === "validation-failed") {
      type = "error";
      description = translate("error.validation_error");
    }
    const notification = {
      id: taskId,
      title: extra.title || context.action,
      description,
      type,
      isHidden: !!extra.isNotificationHidden,
      task: { context, status, progress, result },
    };
    putNotification(notification);
  }

  // ------------------------------------------------------------ notifications

  function putNotification(notification) {
    const index = core.notifications.findIndex((n) => n.id === notification.id);
    if (index >= 0) {
      core.notifications.splice(index, 1, notification);
    } else {
      core.notifications.unshift(notification);
    }
    const status = notification.task && notification.task.status;
    const failed = status === "aborted" || status === "validation-failed";
    if (!notification.isHidden || failed) {
      showToast(notification);
    }
    renderDrawer();
  }

  const toastTimers = new Map();

  function showToast(notification) {
    const container = document.getElementById("shell-toasts");
    let el = container.querySelector(`[data-notification-id="${CSS.escape(notification.id)}"]`);
    if (!el) {
      el = document.createElement("div");
      el.setAttribute("data-notification-id", notification.id);
      container.appendChild(el);
    }
    const task = notification.task || {};
    el.className = `toast ${notification.type || "info"}`;
    el.setAttribute("data-status", task.status || "");
    el.textContent = "";
    const title = document.createElement("div");
    title.className = "title";
    title.textContent = notification.title || "";
    const description = document.createElement("div");
    description.className = "description";
    description.textContent = notification.description || "";
    const close = document.createElement("button");
    close.className = "close";
    close.type = "button";
    close.setAttribute("aria-label", "Close");
    close.textContent = "\u00d7";
    close.addEventListener("click", () => el.remove());
    el.append(title, description, close);
    if (task.status && !TERMINAL.includes(task.status)) {
      const bar = document.createElement("div");
      bar.className = "progress";
      const fill = document.createElement("div");
      fill.style.width = `${Math.max(0, Math.min(100, task.progress || 0))}%`;
      bar.appendChild(fill);
      el.appendChild(bar);
    }
    if (task.result && (task.status === "aborted" || task.status === "validation-failed")) {
      const action = document.createElement("button");
      action.className = "action";
      action.type = "button";
      action.textContent = translate("common.see_details");
      action.addEventListener("click", () => showTaskError(notification));
      el.appendChild(action);
    }
    clearTimeout(toastTimers.get(notification.id));
    if (!task.status || TERMINAL.includes(task.status)) {
      const timeout = notification.type === "error" ? 10000 : 5000;
      toastTimers.set(notification.id, setTimeout(() => el.remove(), timeout));
    }
  }

  function showTaskError(notification) {
    const task = notification.task || {};
    const result = task.result || {};
    document.getElementById("shell-task-error-title").textContent = notification.title || "";
    const output = typeof result.output === "string" ? result.output : JSON.stringify(result.output, null, 2);
    document.getElementById("shell-task-error-text").textContent =
      `exit code ${result.exit_code}\n\n${result.error || ""}\n${output || ""}`;
    document.getElementById("shell-task-error").showModal();
  }

  function renderDrawer() {
    const visible = core.notifications.filter(
      (n) => !n.isHidden || (n.task && ["aborted", "validation-failed"].includes(n.task.status))
    );
    document.getElementById("shell-bell-count").textContent = String(visible.length);
    const list = document.getElementById("shell-drawer-list");
    list.textContent = "";
    for (const n of visible) {
      const li = document.createElement("li");
      li.textContent = `${n.title} - ${n.description}`;
      list.appendChild(li);
    }
  }

  // ------------------------------------------------------------ websocket

  let socket = null;
  let socketWanted = false;

  function connectSocket() {
    socketWanted = true;
    return new Promise((resolve) => {
      const scheme = window.location.protocol === "https:" ? "wss" : "ws";
      const ws = new WebSocket(`${scheme}://${window.location.host}/ws`);
      socket = ws;
      ws.addEventListener("open", () => {
        const info = loginInfo();
        ws.send(JSON.stringify({ action: "authorize", payload: { jwt: info ? info.token : "" } }));
        document.body.setAttribute("data-ws", "open");
        resolve();
      });
      ws.addEventListener("message", (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (err) {
          return;
        }
        if (message.type === "task" && typeof message.name === "string" && message.name.startsWith("progress/")) {
          onProgressMessage(message.name, message.payload);
        } else if (message.type === "authorize-error") {
          console.error("websocket authorization failed", message.payload);
        }
      });
      ws.addEventListener("close", () => {
        document.body.setAttribute("data-ws", "closed");
        if (socket === ws && socketWanted) {
          setTimeout(() => connectSocket(), 1000);
        }
        resolve();
      });
    });
  }

  function closeSocket() {
    socketWanted = false;
    if (socket) {
      socket.close();
      socket = null;
    }
  }

  // ------------------------------------------------------------ page

  const frame = document.getElementById("app-frame");
  let loadedApp = null;

  function showApp() {
    const appId = appIdFromHash();
    document.getElementById("shell-no-app").hidden = !!appId;
    frame.hidden = !appId;
    if (appId && appId !== loadedApp) {
      loadedApp = appId;
      frame.src = `/apps/${encodeURIComponent(appId)}/index.html`;
    }
  }

  async function start() {
    const info = loginInfo();
    document.getElementById("shell-login").hidden = true;
    document.getElementById("shell-app").hidden = false;
    const user = document.getElementById("shell-user");
    user.textContent = info ? info.username : "";
    user.hidden = false;
    document.getElementById("shell-bell").hidden = false;
    document.getElementById("shell-logout").hidden = false;
    await connectSocket(); // before the app can start a task
    showApp();
  }

  function showLogin(message) {
    closeSocket();
    document.getElementById("shell-app").hidden = true;
    document.getElementById("shell-login").hidden = false;
    document.getElementById("shell-user").hidden = true;
    document.getElementById("shell-bell").hidden = true;
    document.getElementById("shell-logout").hidden = true;
    const error = document.getElementById("login-error");
    error.textContent = message || "";
    error.hidden = !message;
    frame.removeAttribute("src");
    loadedApp = null;
  }

  /** Log in and open the app, or back to the login form with the reason. */
  async function loginAndStart(username, password) {
    try {
      await login(username, password);
    } catch (err) {
      showLogin(translate("login.failed", { message: err.message }));
      return;
    }
    await start();
  }

  document.getElementById("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    await loginAndStart(
      document.getElementById("login-username").value,
      document.getElementById("login-password").value
    );
  });

  document.getElementById("shell-logout").addEventListener("click", async () => {
    try {
      await fetch(`${API_URL}/logout`, { method: "POST", headers: authHeaders() });
    } catch (err) {
      // logging out locally is enough
    }
    localStorage.removeItem(STORAGE_KEY);
    showLogin("");
  });

  document.getElementById("shell-bell").addEventListener("click", () => {
    const drawer = document.getElementById("shell-drawer");
    drawer.hidden = !drawer.hidden;
  });

  window.addEventListener("hashchange", () => {
    if (!document.getElementById("shell-app").hidden) {
      showApp();
    }
  });

  (async function boot() {
    const username = query.get("username");
    const password = query.get("password");
    if (username && password) {
      // do not leave the password in the address bar or the history
      query.delete("username");
      query.delete("password");
      const rest = query.toString();
      window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : "") + window.location.hash);
      await loginAndStart(username, password);
      return;
    }
    if (await tokenIsValid()) {
      await start();
    } else {
      localStorage.removeItem(STORAGE_KEY);
      showLogin("");
    }
  })();
})();
