/**
 * TLS for tests: certificates made by openssl, the config tables that name
 * them, and a node:tls client.
 *
 * @module
 */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import tls from "node:tls";

/** A self-signed certificate and its key: PEM text, and the files holding them. */
export interface Certificate {
  cert: string;
  key: string;
  certPath: string;
  keyPath: string;
}

/**
 * Makes a self-signed certificate for `names` (the first is its CN, all are
 * its DNS names) with `openssl`, an EC P-256 key (fast), valid two days.
 *
 * @param dir the folder for the two files
 * @param names the names it serves, at least one
 */
export async function makeCertificate(dir: string, names: string[]): Promise<Certificate> {
  const base = join(dir, names[0]!.replace(/[^A-Za-z0-9.-]/g, "_"));
  const certPath = `${base}.crt`;
  const keyPath = `${base}.key`;
  const args = [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-days",
    "2",
    "-subj",
    `/CN=${names[0]}`,
    "-addext",
    `subjectAltName=${names.map((name) => `DNS:${name}`).join(",")}`,
    "-keyout",
    keyPath,
    "-out",
    certPath,
  ]; // deno-fmt-ignore
  await new Promise<void>((resolve, reject) => {
    execFile("openssl", args, (error, _stdout, stderr) => {
      if (error) reject(new Error(`openssl could not make a certificate: ${stderr || error.message}`));
      else resolve();
    });
  });
  const [cert, key] = await Promise.all([readFile(certPath, "utf8"), readFile(keyPath, "utf8")]);
  return { cert, key, certPath, keyPath };
}

/**
 * The `[[TABLE.tls]]` tables of a TLS-terminating frontend, one per certificate.
 *
 * @param table the frontend's table: `frontend` or `frontends`
 * @param certificates the certificates, the default first
 */
export function tlsTables(table: string, certificates: Certificate[]): string {
  return certificates.map(({ certPath, keyPath }) =>
    `[[${table}.tls]]\ncert = "${certPath}"\nkey = "${keyPath}"\n`
  ).join("");
}

/**
 * A node:tls client trusting only `ca`, collecting what it receives.
 *
 * @param port the TLS server's port on 127.0.0.1
 * @param servername the SNI it sends
 * @param ca the certificate it trusts (PEM)
 */
export function tlsClient(port: number, servername: string, ca: string) {
  const socket = tls.connect({ host: "127.0.0.1", port, servername, ca });
  let received = "";
  socket.on("data", (chunk) => (received += chunk));
  const secure = new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", resolve);
    socket.once("error", reject);
  });
  const ended = new Promise<void>((resolve) => socket.once("end", resolve));
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  return { socket, secure, ended, closed, received: () => received };
}
