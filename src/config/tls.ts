/**
 * The files of TLS termination: each certificate and key is read and checked
 * when the config loads (so `check` and a reload see a bad file before the
 * listener does), and the names a certificate serves default to the DNS
 * names it carries.
 *
 * @module
 */
import type { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import type { CertificateConfig, FrontendConfig } from "./config.ts";
import { readProblem } from "./config_error.ts";

/**
 * A certificate's problem, at `path` relative to its frontend (`tls.cert`, `tls[1].key`).
 *
 * @example
 * ```ts
 * import { ConfigError, loadConfig } from "mini-balancer";
 *
 * // loadConfig reports a certificate's problem as a ConfigError whose path
 * // ends in this error's field (`frontend.tls.key`).
 * try {
 *   await loadConfig("lb.toml");
 * } catch (error) {
 *   if (error instanceof ConfigError && error.path.includes(".tls")) console.error(error.problem);
 * }
 * ```
 */
export class CertificateError extends Error {
  /** The field at fault, from the frontend's table. */
  readonly field: string;

  /**
   * A certificate or key that cannot be used, naming the field.
   *
   * @param field the field at fault (`tls.key`)
   * @param problem what is wrong, ending in the file
   */
  constructor(field: string, problem: string) {
    super(problem);
    this.name = "CertificateError";
    this.field = field;
  }
}

/**
 * Reads a frontend's certificates and keys, checks that each pair matches,
 * and fills in the names each serves.
 *
 * @param frontend a validated frontend with `tls`
 * @param configFile the config file: relative paths are read from its folder
 * @param single whether `tls` was written as one table (fields `tls.cert`) or an array (`tls[1].cert`)
 * @returns the frontend with the PEM texts read
 * @throws {CertificateError} naming the field and the file at fault
 */
export async function readCertificates(
  frontend: FrontendConfig,
  configFile: string,
  single: boolean,
): Promise<FrontendConfig> {
  const tls = frontend.tls;
  if (tls === undefined) return frontend;
  const base = dirname(configFile);
  const certificates = await Promise.all(tls.certificates.map((certificate, i) => {
    const field = single ? "tls" : `tls[${i}]`;
    return readCertificate(certificate, base, field);
  }));
  return { ...frontend, tls: { certificates } };
}

async function readCertificate(
  certificate: CertificateConfig,
  base: string,
  field: string,
): Promise<CertificateConfig> {
  const [cert, key] = await Promise.all([
    readPem(resolve(base, certificate.certFile), `${field}.cert`, certificate.certFile),
    readPem(resolve(base, certificate.keyFile), `${field}.key`, certificate.keyFile),
  ]);
  const shown = (file: string) => `: current value is ${JSON.stringify(file)}`;
  // node:crypto is loaded only for a config with certificates.
  const { createPrivateKey, X509Certificate } = await import("node:crypto");
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw new CertificateError(
      `${field}.cert`,
      `is not a PEM certificate${shown(certificate.certFile)}`,
    );
  }
  let matches: boolean;
  try {
    matches = x509.checkPrivateKey(createPrivateKey(key));
  } catch {
    throw new CertificateError(
      `${field}.key`,
      `is not a PEM private key${shown(certificate.keyFile)}`,
    );
  }
  if (!matches) {
    throw new CertificateError(
      `${field}.key`,
      `does not match the certificate in ${certificate.certFile}${shown(certificate.keyFile)}`,
    );
  }
  const names = certificate.names.length > 0 ? certificate.names : namesOf(x509);
  return { ...certificate, cert, key, names };
}

async function readPem(path: string, field: string, written: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    const why = readProblem(error);
    throw new CertificateError(field, `${why}: current value is ${JSON.stringify(written)}`);
  }
}

/**
 * The DNS names a certificate carries (subjectAltName), else its common name.
 *
 * @param x509 the certificate
 * @returns lowercase names, wildcards as written (`*.example.com`)
 */
function namesOf(x509: X509Certificate): string[] {
  const alt = x509.subjectAltName ?? "";
  const names = alt.split(/,\s*/).filter((entry) => entry.startsWith("DNS:"))
    .map((entry) => entry.slice(4).toLowerCase());
  if (names.length > 0) return names;
  const cn = /(?:^|\n|,\s*)CN=([^,\n]+)/.exec(x509.subject)?.[1];
  return cn === undefined ? [] : [cn.toLowerCase()];
}
