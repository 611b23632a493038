/** Small formatting helpers shared by the pages and their components, and splitList for
 * the list fields of the forms. */

/** Text for v-html props (NsInlineNotification renders title/description as HTML). */
export function escapeHtml(value) {
  return String(value === null || value === undefined ? "" : value)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/** A form's list field as items: one a line (commas and semicolons separate too); spaces
 * inside an item stay, so that the action reports "not a domain" rather than three odd words. */
export function splitList(text) {
  return String(text || "")
    .split(/[\n,;]+/)
    .map((s) => s.trim())
    .filter((s) => s);
}

export const STATE_TAG_KINDS = {
  in_sync: "green",
  planned: "blue",
  missing: "red",
  missing_runtime: "magenta",
  missing_permanent: "magenta",
  stale_target: "purple",
  instance_missing: "cool-gray",
  unknown: "gray",
};

export const OUTCOME_TAG_KINDS = {
  reply: "green",
  refused: "red",
  timeout: "red",
  invalid: "magenta",
  error: "gray",
};

export const ANSWERED_BY_TAG_KINDS = {
  asterisk: "green",
  proxy: "magenta",
  other: "purple",
};

export const SEVERITY_KINDS = {
  error: "error",
  warning: "warning",
  info: "info",
};

export default {
  methods: {
    escapeHtml,
    /** $t(key) when the key exists (in the locale or in English), else the fallback. */
    tOr(key, fallback, params) {
      if (this.$te(key) || this.$te(key, "en")) {
        return this.$t(key, params);
      }
      return fallback;
    },
    /** $t of each key after a common prefix: the labels of a table's columns. */
    tAll(prefix, keys) {
      return keys.map((key) => this.$t(prefix + key));
    },
    listText(values) {
      if (!values || !values.length) {
        return "-";
      }
      return values.join(", ");
    },
    valueText(value) {
      if (Array.isArray(value)) {
        return this.listText(value);
      }
      if (value === null || value === undefined || value === "") {
        return "-";
      }
      if (typeof value === "object") {
        return JSON.stringify(value);
      }
      return String(value);
    },
  },
};
