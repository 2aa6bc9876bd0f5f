import { Command, Option } from 'commander';

const PROVIDERS = ['aws', 'gcp', 'azure', 'cloudru'] as const;

const program = new Command('deploy')
  .description('bundle, package and deploy the models to a cloud provider')
  .addOption(new Option('--provider <provider>', 'where to deploy').choices(PROVIDERS).makeOptionMandatory())
  .option('--dry-run', 'write every artifact under .deploy/<provider>/ and print the plan, touching no cloud')
  .action((options: { provider: (typeof PROVIDERS)[number] }) => {
    // The provider adapters land one by one; until a provider's adapter exists, say so plainly.
    console.error(`deploy --provider ${options.provider}: this provider's adapter is not part of this release yet`);
    process.exitCode = 1;
  });

await program.parseAsync();
