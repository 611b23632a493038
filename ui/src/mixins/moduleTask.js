/*
 * Run this module's actions the NS8 way: createModuleTaskForApp() posts the task
 * to the cluster API and cluster-admin (the `core` of the parent window) reports
 * its end with the events <action>-completed-<eventId>, <action>-aborted-<eventId>
 * and <action>-validation-failed-<eventId> on core.$root.
 */
import to from "await-to-js";
import { mapState } from "vuex";
import { TaskService, UtilService } from "@nethserver/ns8-ui-lib";

/** A form's error object with no errors: each field "" and no general messages. */
export function emptyFieldErrors(fields) {
  const errors = { general: [] };
  for (const field of fields) {
    errors[field] = "";
  }
  return errors;
}

export default {
  mixins: [TaskService, UtilService],
  computed: {
    ...mapState(["instanceName", "instanceLabel", "core", "appName"]),
  },
  created() {
    this.pendingTaskListeners = [];
  },
  beforeDestroy() {
    for (const [name, fn] of this.pendingTaskListeners) {
      this.core.$root.$off(name, fn);
    }
    this.pendingTaskListeners = [];
  },
  methods: {
    /**
     * Start `action` on this instance.
     *
     * options: {title, description, hidden (default true),
     *   onSettled(): first, whenever the task ends, however it ends,
     *   onCompleted(output, taskResult, taskContext),
     *   onFailure(message): the task aborted, or could not even be created,
     *   onValidationFailed(errors, taskContext): without it, onFailure gets the errors as text,
     *   onValidationOk(task), onProgress(percent)}.
     * Resolves to the eventId, or null when the task was not created.
     */
    async runModuleAction(action, data, options = {}) {
      const eventId = this.getUuid();
      const root = this.core.$root;
      const registered = [];
      const listen = (suffix, handler, once = true) => {
        const name = `${action}-${suffix}-${eventId}`;
        const fn = (...args) => {
          if (once) {
            done();
            settled();
          }
          if (handler) {
            handler(...args);
          }
        };
        registered.push([name, fn]);
        this.pendingTaskListeners.push([name, fn]);
        root.$on(name, fn);
      };
      const done = () => {
        for (const [name, fn] of registered) {
          root.$off(name, fn);
          const i = this.pendingTaskListeners.findIndex((l) => l[1] === fn);
          if (i >= 0) {
            this.pendingTaskListeners.splice(i, 1);
          }
        }
      };
      const settled = () => {
        if (options.onSettled) {
          options.onSettled();
        }
      };
      const fail = (message) => {
        if (options.onFailure) {
          options.onFailure(message);
        }
      };
      listen("completed", (taskContext, taskResult) => {
        if (options.onCompleted) {
          options.onCompleted(taskResult.output, taskResult, taskContext);
        }
      });
      listen("aborted", (taskResult) => fail(this.abortedMessage(taskResult)));
      listen(
        "validation-failed",
        options.onValidationFailed ||
          ((errors) => fail(this.mapValidationErrors(errors, []).general.join("; ")))
      );
      if (options.onValidationOk) {
        listen("validation-ok", options.onValidationOk, false);
      }
      if (options.onProgress) {
        listen("progress", options.onProgress, false);
      }
      const task = {
        action,
        extra: {
          title: options.title || this.$t("action." + action),
          description: options.description || this.$t("common.processing"),
          eventId,
          isNotificationHidden: options.hidden !== false,
          isProgressNotified: !!options.onProgress,
        },
      };
      if (data !== undefined) {
        task.data = data;
      }
      const [err] = await to(this.createModuleTaskForApp(this.instanceName, task));
      if (err) {
        console.error(`error creating task ${action}`, err);
        done();
        settled();
        fail(this.getErrorMessage(err));
        return null;
      }
      return eventId;
    },
    /**
     * runModuleAction with loading[key] up while the task runs. quiet: leave it down
     * (a refresh in place, without skeletons).
     */
    runWithLoading(key, action, data, { quiet = false, ...options } = {}) {
      this.loading[key] = !quiet;
      return this.runModuleAction(action, data, {
        ...options,
        onSettled: () => {
          this.loading[key] = false;
          if (options.onSettled) {
            options.onSettled();
          }
        },
      });
    },
    /**
     * runWithLoading for the usual page task, whose failure becomes the message in
     * error[key].
     */
    runTrackedAction(key, action, data, options = {}) {
      this.error[key] = "";
      return this.runWithLoading(key, action, data, {
        onFailure: (message) => {
          this.error[key] = message;
        },
        ...options,
      });
    },
    /**
     * runModuleAction for the change a modal applies: loading.apply is up while it runs,
     * applyProgress (page data, for ApplyProgress) follows the task, and the task shows
     * in the notification drawer.
     */
    runApplyAction(action, data, options = {}) {
      this.applyProgress = 0;
      return this.runWithLoading("apply", action, data, {
        hidden: false,
        onProgress: (progress) => {
          this.applyProgress = progress || 0;
        },
        ...options,
      });
    },
    /**
     * A message for an aborted task: the last line of its stderr, which the module's
     * steps write as "<3>..." or plain text, else a generic message.
     */
    abortedMessage(taskResult) {
      const text = ((taskResult && taskResult.error) || "").trim();
      const lines = text
        .split("\n")
        .map((l) => l.replace(/^<\d>/, "").trim())
        .filter((l) => l && !l.startsWith("Traceback") && !l.startsWith("File "));
      const last = lines.length ? lines[lines.length - 1] : "";
      return last || this.$t("error.generic_error");
    },
    /**
     * Split validation errors ([{field, parameter, value, error}]) into messages under
     * form fields and general ones. Array indexes in `field` are dropped
     * ("nat.local_networks.1" -> "nat.local_networks"). Each `error` is an i18n key
     * under "validation.".
     */
    mapValidationErrors(errors, fields) {
      const byField = {};
      const general = [];
      for (const item of errors || []) {
        const field = String(item.field || "")
          .split(".")
          .filter((p) => !/^\d+$/.test(p))
          .join(".");
        const message = this.validationMessage(item);
        let target = null;
        if (fields.includes(field)) {
          target = field;
        } else if (fields.includes(item.parameter)) {
          target = item.parameter;
        }
        if (target) {
          byField[target] = byField[target]
            ? byField[target] + "; " + message
            : message;
        } else {
          general.push(message);
        }
      }
      return { byField, general };
    },
    /**
     * Validation errors as a form's error object: every field of `fields` (empty when
     * fine) plus `general`, the messages that belong to no field.
     */
    fieldErrors(errors, fields) {
      const mapped = this.mapValidationErrors(errors, fields);
      return Object.assign(emptyFieldErrors(fields), mapped.byField, {
        general: mapped.general,
      });
    },
    validationMessage(item) {
      // "(root)_required": vue-i18n key paths cannot hold parentheses
      const key = "validation." + String(item.error).replace("(root)", "root");
      const value =
        item.value === null || item.value === undefined
          ? ""
          : typeof item.value === "object"
          ? JSON.stringify(item.value)
          : String(item.value);
      if (this.$te(key) || this.$te(key, "en")) {
        return this.$t(key, { value, field: item.field });
      }
      return this.$t("validation.generic", {
        field: item.field,
        error: item.error,
        value,
      });
    },
  },
};
