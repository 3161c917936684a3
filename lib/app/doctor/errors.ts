/**
 * Bad input to doctor (a flag, the kubeconfig, the manifests): exit code 2, as synth's
 * UsageError. Its own class because lib/app/options.ts loads the constructs (cdk8s-plus), which
 * doctor never needs and which costs a second of start-up on a busy machine.
 */
export class DoctorUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
