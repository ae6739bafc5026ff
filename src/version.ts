/**
 * The version, kept in code so the compiled executable knows it.
 *
 * @module
 */

/**
 * mini-balancer's version; a test keeps it equal to package.json's.
 *
 * @example
 * ```ts
 * import { VERSION } from "mini-balancer";
 *
 * console.log(`mini-balancer ${VERSION}`); // "mini-balancer 0.1.0"
 * ```
 */
export const VERSION = "0.1.0";
