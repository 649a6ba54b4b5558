"""Reports as remote systems send them back, written for the intake tests: an RFC 3464 bounce
(shaped after RFC 3464's own examples), an RFC 5965 ARF complaint, an RFC 3834 auto-reply."""


def dsn(verp: str, recipient: str, status: str = "5.1.1",
        diagnostic: str = "550 5.1.1 <{r}>: Recipient address rejected: User unknown",
        action: str = "failed", mta: str = "mx.remote.test") -> bytes:
    diagnostic = diagnostic.format(r=recipient)
    return f"""\
From: Mail Delivery System <MAILER-DAEMON@{mta}>
To: {verp}
Subject: Undelivered Mail Returned to Sender
Date: Sun, 29 Nov 2026 10:00:00 +0000
Message-ID: <bounce.1@{mta}>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain

Your message could not be delivered to <{recipient}>.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; {mta}
Arrival-Date: Sun, 29 Nov 2026 09:59:58 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822; {recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; {mta}
Diagnostic-Code: smtp; {diagnostic}

--B1
Content-Type: text/rfc822-headers

Return-Path: <{verp}>
From: app@example.com
To: {recipient}
Subject: hello

--B1--
""".replace("\n", "\r\n").encode()


def arf(to: str, return_path: str, recipient: str, source_ip: str = "192.0.2.1",
        received: str = "") -> bytes:
    return f"""\
From: <abuse@isp.example>
To: <{to}>
Subject: FW: hello
Date: Sun, 29 Nov 2026 10:00:00 +0000
Message-ID: <arf.1@isp.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"

This is an email abuse report for an email message received from IP {source_ip}.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <{return_path}>
Original-Rcpt-To: <{recipient}>
Arrival-Date: Sun, 29 Nov 2026 09:55:00 +0000
Source-IP: {source_ip}
Reported-Domain: example.com

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

{received}Return-Path: <{return_path}>
From: <app@example.com>
To: <{recipient}>
Subject: hello
Date: Sun, 29 Nov 2026 09:54:00 +0000

Hello.

--part1_13d.2e68ed54_boundary--
""".replace("\n", "\r\n").encode()


def auto_reply(verp: str, sender: str, subject: str = "Out of office: hello") -> bytes:
    return f"""\
From: {sender}
To: {verp}
Subject: {subject}
Date: Sun, 29 Nov 2026 10:00:00 +0000
Auto-Submitted: auto-replied
X-Autoreply: yes
Content-Type: text/plain

I am away until Monday.
""".replace("\n", "\r\n").encode()
