/*
 * SPDX-License-Identifier: GPL-3.0-or-later
 * diagnose-sip's result for the Diagnose page: the window's time left from the agent's
 * progress, how a fix is offered, a ladder's lanes, the pcap as a file. Pure functions:
 * the page and its components only show what they return.
 */

/** The agent's progress over the listening window: set-progress 5 at its start, 90 at
 * its end (diagnose_actions.run_window), 95 while the result is made. */
export const WINDOW_PROGRESS = { start: 5, end: 90 };

/** Seconds of the window left: the larger of what the agent's progress and the page's
 * own clock say has passed (progress comes once a second, the clock in between). */
export function secondsLeft(duration, progress, elapsedSeconds) {
  const span = WINDOW_PROGRESS.end - WINDOW_PROGRESS.start;
  const byProgress = (Math.max(0, Number(progress) - WINDOW_PROGRESS.start) / span) * duration;
  const passed = Math.max(byProgress, elapsedSeconds || 0);
  return Math.max(0, Math.ceil(duration - passed));
}

/** The actions a fix may name that change something: previewed with dry_run, then applied. */
export const PREVIEWABLE = ["configure-bypass", "add-port-forward", "remove-port-forward", "reconcile-bypass"];

/** Checks, not changes: they have no dry_run, the Status page runs them. */
export const ON_STATUS_PAGE = ["get-status", "verify-bypass"];

/**
 * How a fix is offered: "preview" (an action with a plan), "status" (a check the Status
 * page runs), "manual" (a thing to do in FreePBX: its why says what; also an action this
 * page does not know).
 */
export function fixKind(fix) {
  const action = fix && fix.action;
  if (PREVIEWABLE.includes(action)) {
    return "preview";
  }
  if (ON_STATUS_PAGE.includes(action)) {
    return "status";
  }
  return "manual";
}

/** Causes whose fixes go together, in their order, as one flow (add the new source's
 * forward, then remove the old one). */
export const FIXES_TOGETHER = ["provider_moved"];

/**
 * What a problem's buttons are: [{fixes: [fix], kind}], one per fix, or one group for
 * all the previewable fixes of a cause whose fixes go together.
 */
export function fixOffers(problem) {
  const fixes = (problem && problem.fixes) || [];
  if (FIXES_TOGETHER.includes(problem.cause)) {
    const together = fixes.filter((f) => fixKind(f) === "preview");
    const rest = fixes.filter((f) => fixKind(f) !== "preview");
    const offers = together.length ? [{ fixes: together, kind: "preview" }] : [];
    return offers.concat(rest.map((f) => ({ fixes: [f], kind: fixKind(f) })));
  }
  return fixes.map((f) => ({ fixes: [f], kind: fixKind(f) }));
}

/** The lanes of a ladder, left to right: device, proxy, instance always, "other" only
 * when a step uses it. */
export function ladderLanes(ladder) {
  const lanes = ["device", "proxy", "instance"];
  if ((ladder || []).some((s) => s.from === "other" || s.to === "other")) {
    lanes.push("other");
  }
  return lanes;
}

/** A step of the ladder that is no message: nothing came back ("silence"), or the
 * window ended while waiting ("…"). Drawn dashed. */
export function isSilence(step) {
  return step && (step.what === "silence" || step.what === "…");
}

/** The bytes of a base64 text. */
export function base64Bytes(text) {
  const binary = atob(text || "");
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) {
    bytes[i] = binary.charCodeAt(i);
  }
  return bytes;
}

/** diagnose-<time>.pcap, the time being the window's start (ISO, UTC): 20261214T101500Z. */
export function pcapFileName(started) {
  const compact = String(started || "")
    .replace(/\+00:00$/, "Z")
    .replace(/\.\d+/, "")
    .replace(/[-:]/g, "");
  const safe = /^\d{8}T\d{6}Z?$/.test(compact) ? compact : String(Date.now());
  return `diagnose-${safe}.pcap`;
}

/** An outcome key of a source ("relayed_answered:200", "dropped") as {outcome, code}. */
export function splitOutcome(key) {
  const [outcome, code] = String(key).split(":");
  return { outcome, code: code || "" };
}

export const OUTCOME_KINDS = {
  relayed_answered: "green",
  answered_by_proxy: "magenta",
  dropped: "red",
  relay_unanswered: "red",
  pending: "cool-gray",
};

export const MIRROR_KINDS = {
  ours: "green",
  shared: "teal",
  busy: "red",
  unavailable: "red",
};
