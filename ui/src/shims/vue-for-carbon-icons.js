/*
 * What @carbon/icons-vue 10 sees as "vue" (see vue.config.js). It picks its Vue 3
 * render path when `import * as Vue from "vue"` has an `h` export, and Vue 2.7
 * exports one: its icons then render as empty <svg> elements. Without `h` here it
 * takes its Vue 2 path.
 */
import Vue from "vue";

export default Vue;
export const version = Vue.version;
