#!/usr/bin/perl
# An independent DKIM verifier for the tests: Perl's Mail::DKIM (Debian libmail-dkim-perl),
# its key lookups through Net::DNS sent to the test DNS server.
# Usage: dkimverify.pl <nameserver ip> <port> < message; prints one line per signature
# ("<domain> <selector> <algorithm> <result>") and "RESULT <overall>".
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Mail::DKIM::DNS;
use Net::DNS::Resolver;

my ($ns, $port) = @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(
    nameservers => [$ns], port => $port, recurse => 1, udp_timeout => 5, tcp_timeout => 5));
my $dkim = Mail::DKIM::Verifier->new();
binmode STDIN;
while (my $line = <STDIN>) {
    $line =~ s/\015?\012\z/\015\012/;
    $dkim->PRINT($line);
}
$dkim->CLOSE;
foreach my $sig ($dkim->signatures) {
    printf "%s %s %s %s\n", $sig->domain, $sig->selector, $sig->algorithm, $sig->result;
}
print "RESULT ", $dkim->result, "\n";
