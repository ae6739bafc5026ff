/**
 * The self-signed certificate the TLS contenders share: made once per run
 * with openssl in the run's temporary directory, so that mini-balancer and
 * HAProxy do the same handshake with the same key.
 *
 * @module
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./processes.ts";

/** Where a certificate's files are. */
export interface Certificate {
  /** The certificate (PEM). */
  cert: string;
  /** Its private key (PEM). */
  key: string;
  /** Both in one file, as HAProxy's `crt` takes them. */
  pem: string;
}

/** The key types the benchmark can make a certificate for. */
export type KeyType = "ec-p256" | "rsa-2048";

const KEY_OPTIONS: Record<KeyType, string[]> = {
  "ec-p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
  "rsa-2048": ["-newkey", "rsa:2048"],
};

/**
 * Makes a self-signed certificate for 127.0.0.1 in `dir`.
 *
 * @param dir an existing directory
 * @param type the key type
 * @returns the paths of the certificate, the key and both together
 * @throws Error when openssl fails
 */
export async function makeCertificate(dir: string, type: KeyType): Promise<Certificate> {
  const cert = join(dir, `${type}.cert.pem`);
  const key = join(dir, `${type}.key.pem`);
  const pem = join(dir, `${type}.pem`);
  const made = await run(
    "openssl",
    [
      "req",
      "-x509",
      ...KEY_OPTIONS[type],
      "-nodes",
      "-days",
      "2",
      "-subj",
      "/CN=127.0.0.1",
      "-keyout",
      key,
      "-out",
      cert,
    ],
    { timeoutMs: 30_000 },
  );
  if (made.code !== 0) {
    throw new Error(`openssl req failed: ${made.stderr.trim() || `exit code ${made.code}`}`);
  }
  writeFileSync(pem, readFileSync(cert, "utf8") + readFileSync(key, "utf8"));
  return { cert, key, pem };
}

/**
 * A certificate made on first use and shared after: the first TLS contender
 * to start makes it, the others take the same.
 *
 * @param dir the directory to make it in
 * @param type the key type
 * @returns a function that resolves to the certificate
 */
export function sharedCertificate(dir: string, type: KeyType): () => Promise<Certificate> {
  let made: Promise<Certificate> | undefined;
  return () => {
    made ??= makeCertificate(dir, type);
    return made;
  };
}
