/**
 * Crash injection for the crash tests and the soak (PROTOCOL.md §6 "Crash points"): when the
 * environment variable SELKIE_MIGRATION_CRASH names a point this process reaches, it kills itself
 * with SIGKILL there, as `kill -9` would; SELKIE_MIGRATION_CUT closes the connection there instead.
 * Unset (always, outside tests), they do nothing.
 */
const target = process.env["SELKIE_MIGRATION_CRASH"];
const cut = process.env["SELKIE_MIGRATION_CUT"];

/** Kills the process at `name` (SELKIE_MIGRATION_CRASH), or cuts `channel` there (SELKIE_MIGRATION_CUT). */
export function crashPoint(name: string, channel?: { close(reason?: string): void }): void {
  if (target !== undefined && target === name) process.kill(process.pid, "SIGKILL");
  if (cut !== undefined && cut === name) channel?.close("connection cut (test)");
}

/** Every crash point, by side, in protocol order (the tests iterate over these). */
export const SOURCE_CRASH_POINTS = [
  "source:after-offer",
  "source:after-round-0",
  "source:after-frozen-journal",
  "source:after-final",
  "source:after-prepared",
  "source:after-committing-journal",
  "source:after-counter-destroyed",
  "source:after-commit-sent",
] as const;

export const DESTINATION_CRASH_POINTS = [
  "destination:after-admit",
  "destination:during-receive",
  "destination:after-final",
  "destination:after-preparing-journal",
  "destination:after-prepared-journal",
  "destination:after-prepared-sent",
  "destination:after-committed-journal",
  "destination:after-install",
] as const;
