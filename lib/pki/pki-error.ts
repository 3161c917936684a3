/**
 * Thrown for every PKI problem: bad options, a certificate that would outlive its CA, and
 * unreadable or inconsistent files in a PKI store. The message names the option or the file,
 * the value found, and what is expected.
 */
export class PkiError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PkiError';
  }
}
