/**
 * Logging through LogTape, configured once at start. The text format reads
 * like the original's tracing lines: the span-like context first
 * (`frontend{local_address=…}:handle_connection{peer_address=…}:through{target_address=…}`),
 * then the category and the message, then any other fields.
 *
 * @module
 */
import {
  configureSync,
  getJsonLinesFormatter,
  getLogger,
  type Logger,
  type LogLevel,
  type LogRecord,
} from "@logtape/logtape";

/** The root category of every logger in mini-balancer. */
export const ROOT_CATEGORY = "mini_balancer";

/**
 * How log lines are written.
 *
 * @example
 * ```ts
 * import { configureLogging, type LogFormat } from "mini-balancer";
 *
 * const format: LogFormat = "json"; // one JSON object a line, for a log shipper
 * configureLogging({ format });
 * ```
 */
export type LogFormat = "text" | "json";

/** The log formats {@linkcode configureLogging} accepts. */
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

/**
 * Maps the number of `-v` flags to the lowest level logged, as the original
 * did: none = warning, 1 = info, 2 = debug, 3 or more = trace. The
 * operator category shows INFO at every verbosity (see configureLogging).
 *
 * @param verbosity how many times -v was given
 * @returns the lowest level to log
 */
export function levelForVerbosity(verbosity: number): LogLevel {
  return (["warning", "info", "debug"] as const)[verbosity] ?? "trace";
}

/**
 * The category of operators' actions and their outcomes (a reload, a
 * drain, a backend change, with who asked): logged at INFO and shown at
 * every verbosity, the default included, as an audit trail.
 */
export const OPERATOR_CATEGORY = "operator";

/**
 * Returns a logger under mini-balancer's root category.
 *
 * @param name the sub-category, e.g. "frontend"
 * @returns the logger
 */
export function getLog(name: string): Logger {
  return getLogger([ROOT_CATEGORY, name]);
}

const LEVEL_LABELS: Record<LogLevel, string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: " INFO",
  warning: " WARN",
  error: "ERROR",
  fatal: "FATAL",
};

/** Fields rendered as the original's spans, outermost first. */
const SPANS: readonly [field: string, span: string][] = [
  ["local_address", "frontend"],
  ["peer_address", "handle_connection"],
  ["target_address", "through"],
];
const SPAN_FIELDS = new Set(SPANS.map(([field]) => field));

/**
 * Formats a record as one text line in the original's style.
 *
 * @param record the log record
 * @returns the line, ending in a newline
 */
export function formatText(record: LogRecord): string {
  const properties = record.properties;
  const spans: string[] = [];
  for (const [field, span] of SPANS) {
    if (properties[field] !== undefined) spans.push(`${span}{${field}=${properties[field]}}`);
  }
  let message = "";
  for (const part of record.message) message += typeof part === "string" ? part : show(part);
  let fields = "";
  for (const key in properties) {
    if (!SPAN_FIELDS.has(key) && properties[key] !== undefined) {
      fields += ` ${key}=${show(properties[key])}`;
    }
  }
  const time = new Date(record.timestamp).toISOString();
  const context = spans.length > 0 ? `${spans.join(":")}: ` : "";
  return `${time} ${LEVEL_LABELS[record.level]} ${context}${
    record.category.join("::")
  }: ${message}${fields}\n`;
}

function show(value: unknown): string {
  if (typeof value === "string") return /[\s"=]/.test(value) ? JSON.stringify(value) : value;
  if (value instanceof Error) return JSON.stringify(value.message);
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

/**
 * Formats a record as one JSON line: LogTape's JSON Lines formatter
 * (`@timestamp`, `level`, `message`, `logger`, `properties`).
 */
export const formatJson: (record: LogRecord) => string = getJsonLinesFormatter();

/**
 * Options for {@linkcode configureLogging}.
 *
 * @example
 * ```ts
 * import { configureLogging, type LoggingOptions } from "mini-balancer";
 *
 * const lines: string[] = [];
 * const options: LoggingOptions = { verbosity: 2, format: "json", write: (line) => lines.push(line) };
 * configureLogging(options);
 * ```
 */
export interface LoggingOptions {
  /** How many times -v was given. @default 0 */
  verbosity?: number;
  /** Line format. @default "text" */
  format?: LogFormat;
  /** Where each formatted line goes. @default writes to standard error */
  write?: (line: string) => void;
  /** This process is worker N: every line says `worker=N`. */
  worker?: number;
}

/**
 * Configures LogTape for mini-balancer's categories, replacing any earlier
 * configuration.
 *
 * @param options verbosity, format and destination
 *
 * @example
 * ```ts
 * import { Balancer, configureLogging, logEvents } from "mini-balancer";
 * import { net } from "mini-balancer/node";
 *
 * configureLogging({ verbosity: 1, format: "text" }); // INFO and up, to standard error
 * const balancer = await Balancer.start(config, { net, events: logEvents() });
 * ```
 */
export function configureLogging(options: LoggingOptions = {}): void {
  const { verbosity = 0, format = "text", write = writeStderr, worker } = options;
  const plain = format === "json" ? formatJson : formatText;
  const formatter = worker === undefined
    ? plain
    : (record: LogRecord) => plain({ ...record, properties: { ...record.properties, worker } });
  configureSync({
    reset: true,
    sinks: { out: (record: LogRecord) => write(formatter(record)) },
    loggers: [
      { category: ROOT_CATEGORY, lowestLevel: levelForVerbosity(verbosity), sinks: ["out"] },
      {
        category: [ROOT_CATEGORY, OPERATOR_CATEGORY],
        lowestLevel: verbosity === 0 ? "info" : levelForVerbosity(verbosity),
        sinks: ["out"],
        parentSinks: "override",
      },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: ["out"] },
    ],
  });
}

function writeStderr(line: string): void {
  console.error(line.endsWith("\n") ? line.slice(0, -1) : line);
}
