/* smtpc completion bash|zsh [FILE] | accounts [--config FILE] (hidden): the
 * shell completion scripts, generated from the option table (args.c), so
 * they cannot drift from it; the build writes them and make install puts
 * them where bash-completion and zsh look. "accounts" lists the account
 * names of the configuration for the scripts. */
#ifndef SMTPC_CLI_COMPLETION_H
#define SMTPC_CLI_COMPLETION_H

int cmd_completion(const char *prog, int argc, char **argv);

#endif
