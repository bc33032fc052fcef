/** UNTRUSTED (server). Selkie's HTTP server: the handler, its node:http binding, tokens and limits. */
export { createHandler, type HandlerOptions, type SelkieHandler, type Logger, type ServerContext } from "./handler.js";
export { serve, type ServeOptions, type RunningServer } from "./serve.js";
export { attachHranaWebSockets, type HranaWebSockets } from "./hrana/ws.js";
export { TokenStore, TOKENS_FILE, type TokenRecord, type TokenScope, type Principal } from "./tokens.js";
export { DEFAULT_LIMITS, type Limits } from "./limits.js";
export { HttpError } from "./errors.js";
export { DB_NAME_RE } from "./registry.js";
