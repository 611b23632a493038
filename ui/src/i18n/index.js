import Vue from "vue";
import VueI18n from "vue-i18n";

import en from "../../public/i18n/en/translation.json";
import it from "../../public/i18n/it/translation.json";

Vue.use(VueI18n);

export const messages = { en, it };

/**
 * The language of cluster-admin when it tells us (core.$root.$i18n.locale),
 * else the browser's. English is the fallback for missing keys.
 */
export function preferredLocale() {
  let lang = "";
  try {
    const core = window.parent.core;
    lang = core && core.$root && core.$root.$i18n && core.$root.$i18n.locale;
  } catch (e) {
    lang = "";
  }
  lang = (lang || navigator.language || "en").substring(0, 2);
  return messages[lang] ? lang : "en";
}

export default new VueI18n({
  locale: preferredLocale(),
  fallbackLocale: "en",
  messages,
  silentFallbackWarn: true,
});
