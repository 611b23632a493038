/*
 * Conflicts: fields the module owns that someone else changed (get-status's
 * bypass.conflicts, each also a finding `conflict_<kind>`). The module never overwrites
 * them on its own; each has two ways out, both reconcile-bypass requests:
 * keep_theirs releases the field, put_ours_back sets the module's value again.
 */

export const WAYS_OUT = ["keep_theirs", "put_ours_back"];

/** The conflicts of get-status's bypass part whose key starts with prefix
 * ("trunk:nethvoice1:", "forward:"): what a page shows next to the thing in conflict. */
export function conflictsWithPrefix(bypass, prefix) {
  const conflicts = (bypass && bypass.conflicts) || [];
  return conflicts.filter((c) => String(c.key || "").startsWith(prefix));
}

/** What a key names, from its prefix: forward, trunk, nat or alias. */
export function conflictCategory(conflict) {
  return String((conflict && conflict.key) || "").split(":")[0];
}

/** The task a way out runs, as get-status gives it ({action, data}), else the
 * reconcile-bypass request it stands for. */
export function wayOutTask(conflict, way) {
  const given = conflict && conflict.ways_out && conflict.ways_out[way];
  if (given && given.action && given.data) {
    return { action: given.action, data: given.data };
  }
  return { action: "reconcile-bypass", data: { [way]: [conflict.key] } };
}

/** The NAT settings by their FreePBX names, as the NAT form labels them. */
const NAT_LABELS = {
  externip: "trunks.external_address",
  localnets: "trunks.local_networks",
};

/** A conflict in words, for the components that show one (with Format's tOr). */
export const ConflictText = {
  methods: {
    /** What the conflict is about: "Trunk Custom-Voip of nethvoice1". */
    conflictSubject(conflict) {
      const category = conflictCategory(conflict);
      const subject = conflict.subject || conflict.key;
      const name = category === "nat" && NAT_LABELS[subject] ? this.$t(NAT_LABELS[subject]) : subject;
      return this.tOr("conflicts.subject." + category, name, {
        name,
        instance: conflict.instance || "",
      });
    },
    /** One side's value in words: absent (null), empty, a list, or the value itself. */
    conflictValue(conflict, value) {
      if (value === null || value === undefined) {
        return this.tOr("conflicts.absent." + conflict.kind, this.$t("conflicts.absent.default"));
      }
      if (Array.isArray(value)) {
        return value.length ? value.join(", ") : this.$t("conflicts.empty");
      }
      if (value === "") {
        return conflictCategory(conflict) === "trunk"
          ? this.$t("conflicts.no_outbound_proxy")
          : this.$t("conflicts.empty");
      }
      return typeof value === "object" ? JSON.stringify(value) : String(value);
    },
  },
};

/**
 * For a page that shows conflicts: `resolving` drives ResolveConflictModal, and
 * startResolve({conflict, way}) (ConflictItem's `resolve` event) opens it.
 */
export default {
  data() {
    return {
      resolving: { visible: false, conflict: null, way: "" },
    };
  },
  methods: {
    startResolve({ conflict, way }) {
      this.resolving = { visible: true, conflict, way };
    },
  },
};
