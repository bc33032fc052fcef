/** Migrations running in this process (the outcome rule answers `pending` for these, PROTOCOL.md §5). */
export const active = {
  names: new Set<string>(),
  mids: new Map<string, { committed: boolean }>(),
};
