/**
 * What the Trunks page gives each of its settings forms (NAT, domain aliases): the
 * status it shows, the instance it is about and the page's task state.
 */
export default {
  props: {
    /** get-status's bypass part (null when there is none) */
    bypass: { type: Object, default: null },
    /** the NethVoice instance the form is about ("" when there is none) */
    instance: { type: String, default: "" },
    /** get-status is running: a skeleton */
    loading: { type: Boolean, default: false },
    /** a task of the page is running: no input meanwhile */
    busy: { type: Boolean, default: false },
    /** this form's preview is running */
    previewing: { type: Boolean, default: false },
    errors: { type: Object, default: () => ({ general: [] }) },
  },
};
