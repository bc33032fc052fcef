/**
 * MigrationChannelError: every way the attested channel ends or refuses a peer (CHANNEL.md §6).
 * Match on `code`; messages say what happened and what to do.
 */
import { SelkieError } from "../../errors.js";

export const CHANNEL_CODES = [
  "CHANNEL_CONNECT",
  "CHANNEL_UPGRADE_REFUSED",
  "CHANNEL_TLS",
  "CHANNEL_TIMEOUT",
  "CHANNEL_VERSION",
  "CHANNEL_ROLE",
  "CHANNEL_WRONG_CA",
  "CHANNEL_DEV_CA",
  "CHANNEL_QUOTE_REPLAY",
  "CHANNEL_QUOTE_INVALID",
  "CHANNEL_RUNTIME_VERSION",
  "CHANNEL_POLICY",
  "CHANNEL_REFUSED_BY_PEER",
  "CHANNEL_FRAME_TOO_LARGE",
  "CHANNEL_FRAME_MALFORMED",
  "CHANNEL_FRAME_SEQUENCE",
  "CHANNEL_FRAME_TRUNCATED",
  "CHANNEL_CLOSED",
  "CHANNEL_BAD_OPTIONS",
] as const;

export type ChannelErrorCode = (typeof CHANNEL_CODES)[number];

export class MigrationChannelError extends SelkieError {
  declare readonly code: ChannelErrorCode;
  constructor(code: ChannelErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export function isChannelCode(v: unknown): v is ChannelErrorCode {
  return typeof v === "string" && (CHANNEL_CODES as readonly string[]).includes(v);
}
