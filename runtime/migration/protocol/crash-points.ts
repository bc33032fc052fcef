/**
 * Crash injection for the crash tests and the soak (PROTOCOL.md §6 "Crash points"): when the
 * environment variable SELKIE_MIGRATION_CRASH names a point this process reaches, it kills itself
 * with SIGKILL there, as `kill -9` would. Unset (always, outside tests), it does nothing.
 */
const target = process.env["SELKIE_MIGRATION_CRASH"];

export function crashPoint(name: string): void {
  if (target !== undefined && target === name) process.kill(process.pid, "SIGKILL");
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
