# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_renewd_global_optspecs
    string join \n config= v/verbose h/help V/version
end

function __fish_renewd_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_renewd_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_renewd_using_subcommand
    set -l cmd (__fish_renewd_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c renewd -n "__fish_renewd_needs_command" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_needs_command" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c renewd -n "__fish_renewd_needs_command" -s V -l version -d 'Print version'
complete -c renewd -n "__fish_renewd_needs_command" -f -a "run" -d 'The daemon (what renewd.service starts): plans, renews, watches the specs, reloads on SIGHUP'
complete -c renewd -n "__fish_renewd_needs_command" -f -a "check" -d 'Validate the global configuration and every spec, without touching the network'
complete -c renewd -n "__fish_renewd_needs_command" -f -a "status" -d 'One row per certificate: expiry, days left, next renewal, last result. Exits 1 when any certificate is failing or has less than --warn left (a monitoring check)'
complete -c renewd -n "__fish_renewd_needs_command" -f -a "renew" -d 'Renew now the certificates that are due (all, or the NAMEs given), then exit. Due: the lifetime rule, or earlier when the CA\'s renewal window (ARI) is open'
complete -c renewd -n "__fish_renewd_needs_command" -f -a "revoke" -d 'Revoke the live certificate of NAME with the account that ordered it'
complete -c renewd -n "__fish_renewd_needs_command" -f -a "delete" -d 'Remove the spec, live/NAME and archive/NAME of a certificate (never the account, never deployed copies). Asks first unless --yes'
complete -c renewd -n "__fish_renewd_needs_command" -f -a "account" -d 'The ACME account: show it, set its contact at the CA, roll its key over, deactivate it'
complete -c renewd -n "__fish_renewd_needs_command" -f -a "dns-test" -d 'Add a test TXT record with a dns server\'s TSIG key, time every authoritative server until it serves it, delete it again, and explain whatever failed. Exits 1 unless every check passed'
complete -c renewd -n "__fish_renewd_needs_command" -f -a "persist" -d 'The standing dns-persist-01 records renewd wrote'
complete -c renewd -n "__fish_renewd_needs_command" -f -a "import" -d 'Turn a certbot --dns-rfc2136 setup into renewd\'s configuration; its certificates become renewd\'s live ones (nothing is reissued). Prints the files; --write writes them next to --config'
complete -c renewd -n "__fish_renewd_using_subcommand run" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand run" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_using_subcommand run" -s h -l help -d 'Print help'
complete -c renewd -n "__fish_renewd_using_subcommand check" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand check" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_using_subcommand check" -s h -l help -d 'Print help'
complete -c renewd -n "__fish_renewd_using_subcommand status" -l warn -d 'Time left below which a certificate needs attention' -r
complete -c renewd -n "__fish_renewd_using_subcommand status" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand status" -l json -d 'Print the stable JSON document instead of the table'
complete -c renewd -n "__fish_renewd_using_subcommand status" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_using_subcommand status" -s h -l help -d 'Print help'
complete -c renewd -n "__fish_renewd_using_subcommand renew" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand renew" -l force -d 'Renew even if not due'
complete -c renewd -n "__fish_renewd_using_subcommand renew" -l dry-run -d 'Go as far as the CA\'s validation of every name, then give the authorizations up and remove the TXT values: nothing is issued or written (implies --force)'
complete -c renewd -n "__fish_renewd_using_subcommand renew" -l timings -d 'After each renewed certificate, print where its time went, phase by phase (account, order, dns-update, propagation, validation, key, finalize, install, deploy, ...)'
complete -c renewd -n "__fish_renewd_using_subcommand renew" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_using_subcommand renew" -s h -l help -d 'Print help'
complete -c renewd -n "__fish_renewd_using_subcommand revoke" -l reason -d 'Why (RFC 5280): unspecified, keycompromise, affiliationchanged, superseded, cessationofoperation' -r -f -a "unspecified\t''
keycompromise\t''
affiliationchanged\t''
superseded\t''
cessationofoperation\t''"
complete -c renewd -n "__fish_renewd_using_subcommand revoke" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand revoke" -l with-key -d 'Sign the revocation with the certificate\'s own private key (live/NAME/privkey.pem) instead of the account: for a certificate whose account is lost or deactivated'
complete -c renewd -n "__fish_renewd_using_subcommand revoke" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_using_subcommand revoke" -s h -l help -d 'Print help'
complete -c renewd -n "__fish_renewd_using_subcommand delete" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand delete" -l yes -d 'Do not ask'
complete -c renewd -n "__fish_renewd_using_subcommand delete" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_using_subcommand delete" -s h -l help -d 'Print help'
complete -c renewd -n "__fish_renewd_using_subcommand account; and not __fish_seen_subcommand_from show update rollover deactivate" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand account; and not __fish_seen_subcommand_from show update rollover deactivate" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_using_subcommand account; and not __fish_seen_subcommand_from show update rollover deactivate" -s h -l help -d 'Print help'
complete -c renewd -n "__fish_renewd_using_subcommand account; and not __fish_seen_subcommand_from show update rollover deactivate" -f -a "show" -d 'URL, directory, contact and key of the account (from the state directory; no network)'
complete -c renewd -n "__fish_renewd_using_subcommand account; and not __fish_seen_subcommand_from show update rollover deactivate" -f -a "update" -d 'Set the account\'s contact addresses at the CA (default: `contact:` of renewd.yaml)'
complete -c renewd -n "__fish_renewd_using_subcommand account; and not __fish_seen_subcommand_from show update rollover deactivate" -f -a "rollover" -d 'Replace the account key (RFC 8555 §7.3.5): the CA stops accepting the old one'
complete -c renewd -n "__fish_renewd_using_subcommand account; and not __fish_seen_subcommand_from show update rollover deactivate" -f -a "deactivate" -d 'Close the account at the CA for good. Asks first unless --yes'
complete -c renewd -n "__fish_renewd_using_subcommand account; and __fish_seen_subcommand_from show" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand account; and __fish_seen_subcommand_from show" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_using_subcommand account; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c renewd -n "__fish_renewd_using_subcommand account; and __fish_seen_subcommand_from update" -l contact -d 'A contact URL (`mailto:pki@example.org`); repeat for several' -r
complete -c renewd -n "__fish_renewd_using_subcommand account; and __fish_seen_subcommand_from update" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand account; and __fish_seen_subcommand_from update" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_using_subcommand account; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c renewd -n "__fish_renewd_using_subcommand account; and __fish_seen_subcommand_from rollover" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand account; and __fish_seen_subcommand_from rollover" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_using_subcommand account; and __fish_seen_subcommand_from rollover" -s h -l help -d 'Print help'
complete -c renewd -n "__fish_renewd_using_subcommand account; and __fish_seen_subcommand_from deactivate" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand account; and __fish_seen_subcommand_from deactivate" -l yes
complete -c renewd -n "__fish_renewd_using_subcommand account; and __fish_seen_subcommand_from deactivate" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_using_subcommand account; and __fish_seen_subcommand_from deactivate" -s h -l help -d 'Print help'
complete -c renewd -n "__fish_renewd_using_subcommand dns-test" -l zone -d 'The zone to update. Default: the spec\'s `zone:`, else discovered (SOA, following CNAMEs)' -r
complete -c renewd -n "__fish_renewd_using_subcommand dns-test" -l name -d 'The domain to test (`_acme-challenge.` is prepended unless present). Default: the first domain of the first spec that uses SERVER' -r
complete -c renewd -n "__fish_renewd_using_subcommand dns-test" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand dns-test" -l persist -d 'Write nothing: show the dns-persist-01 record (`_validation-persist.DOMAIN`) on every authoritative server, and whether it names this certificate\'s account'
complete -c renewd -n "__fish_renewd_using_subcommand dns-test" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_using_subcommand dns-test" -s h -l help -d 'Print help'
complete -c renewd -n "__fish_renewd_using_subcommand persist; and not __fish_seen_subcommand_from remove" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand persist; and not __fish_seen_subcommand_from remove" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_using_subcommand persist; and not __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c renewd -n "__fish_renewd_using_subcommand persist; and not __fish_seen_subcommand_from remove" -f -a "remove" -d 'Delete exactly the values renewd wrote for NAME (other values at the same owner stay), through the dns server they were written with'
complete -c renewd -n "__fish_renewd_using_subcommand persist; and __fish_seen_subcommand_from remove" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand persist; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_using_subcommand persist; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c renewd -n "__fish_renewd_using_subcommand import" -l state-dir -d '`state_dir:` of the new configuration' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand import" -l eab-kid -d 'The CA\'s External Account Binding key id (certbot does not store it)' -r
complete -c renewd -n "__fish_renewd_using_subcommand import" -l trust -d 'Extra roots for the ACME server\'s TLS (`trust:`). certbot\'s configuration has no such setting, and $REQUESTS_CA_BUNDLE is not taken: give the file here' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand import" -l config -d 'The global configuration file' -r -F
complete -c renewd -n "__fish_renewd_using_subcommand import" -l write -d 'Write the files and hook copies (never overwriting any) and install the certificates into state_dir'
complete -c renewd -n "__fish_renewd_using_subcommand import" -s v -l verbose -d 'More log output on stderr (-v: info, -vv: debug). RENEWD_LOG overrides (tracing filter syntax)'
complete -c renewd -n "__fish_renewd_using_subcommand import" -s h -l help -d 'Print help (see more with \'--help\')'
