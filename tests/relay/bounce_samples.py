"""Bounce, complaint and auto-reply samples written for the tests, in the shapes real servers
send (none copied from a corpus). The RFC ones follow the examples in RFC 3464 and RFC 5965."""
from __future__ import annotations

from email.header import Header

VERP = "b-1234-5678-abcdef@bounces.example"
UTF8_RCPT = "jos\u00e9@b\u00fccher.example"


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def returned(to: str = "rcpt@example.org", subject: str = "Spring sale") -> str:
    return (f"Return-Path: <{VERP}>\n"
            "From: Shop <news@shop.example>\n"
            f"To: {to}\n"
            f"Subject: {subject}\n"
            "Message-ID: <orig-1@shop.example>\n"
            "Date: Tue, 24 Nov 2026 03:00:00 +0000\n")


# RFC 3464 appendix A: "Simple DSN" (one failed recipient) and "Multi-Recipient DSN".
RFC3464_SIMPLE = crlf(f"""\
Date: Thu, 7 Jul 1994 17:16:05 -0400
From: Mail Delivery Subsystem <MAILER-DAEMON@CS.UTK.EDU>
Message-Id: <199407072116.RAA14128@CS.UTK.EDU>
Subject: Returned mail: Cannot send message for 5 days
To: <{VERP}>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
    boundary="RAA14128.773615765/CS.UTK.EDU"

--RAA14128.773615765/CS.UTK.EDU

   ----- The following addresses had delivery problems -----
<louisl@larry.slip.umd.edu>  (unrecoverable error)

   ----- Transcript of session follows -----
<louisl@larry.slip.umd.edu>... Deferred: Connection timed out
        with larry.slip.umd.edu.
Message could not be delivered for 5 days
Message will be deleted from queue

--RAA14128.773615765/CS.UTK.EDU
content-type: message/delivery-status

Reporting-MTA: dns; cs.utk.edu

Original-Recipient: rfc822;louisl@larry.slip.umd.edu
Final-Recipient: rfc822;louisl@larry.slip.umd.edu
Action: failed
Status: 4.0.0
Diagnostic-Code: smtp; 426 connection timed out
Last-Attempt-Date: Thu, 7 Jul 1994 17:15:49 -0400

--RAA14128.773615765/CS.UTK.EDU
content-type: message/rfc822

{returned("louisl@larry.slip.umd.edu", "Interoperability test")}
The body.

--RAA14128.773615765/CS.UTK.EDU--
""")

RFC3464_MULTI = crlf(f"""\
Date: Fri, 8 Jul 1994 09:21:47 -0400
From: Mail Delivery Subsystem <MAILER-DAEMON@CS.UTK.EDU>
Subject: Returned mail: User unknown
To: <{VERP}>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
    boundary="JAA13167.773673707/CS.UTK.EDU"

--JAA13167.773673707/CS.UTK.EDU
content-type: text/plain; charset=us-ascii

   ----- The following addresses had delivery problems -----
<arathib@vnet.ibm.com>  (unrecoverable error)
<wsnell@sdcc13.ucsd.edu>  (unrecoverable error)

--JAA13167.773673707/CS.UTK.EDU
content-type: message/delivery-status

Reporting-MTA: dns; cs.utk.edu

Original-Recipient: rfc822;arathib@vnet.ibm.com
Final-Recipient: rfc822;arathib@vnet.ibm.com
Action: failed
Status: 5.0.0 (permanent failure)
Diagnostic-Code: smtp; 550 'arathib@vnet.IBM.COM' is not a
    registered gateway user
Remote-MTA: dns; vnet.ibm.com

Original-Recipient: rfc822;johnh@hpnjld.njd.hp.com
Final-Recipient: rfc822;johnh@hpnjld.njd.hp.com
Action: delayed
Status: 4.0.0 (hpnjld.njd.jp.com: host name lookup failure)

Original-Recipient: rfc822;wsnell@sdcc13.ucsd.edu
Final-Recipient: rfc822;wsnell@sdcc13.ucsd.edu
Action: failed
Status: 5.0.0
Diagnostic-Code: smtp; 550 user unknown
Remote-MTA: dns; sdcc13.ucsd.edu

--JAA13167.773673707/CS.UTK.EDU
content-type: message/rfc822

{returned("arathib@vnet.ibm.com")}
The body.

--JAA13167.773673707/CS.UTK.EDU--
""")

# RFC 3464 report inside a multipart/mixed (a gateway that wraps what it relays), returned
# headers only, and a specific code inside a generic Status.
NESTED = crlf(f"""\
From: MAILER-DAEMON@gw.example.net
To: {VERP}
Subject: Undeliverable: Spring sale
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: text/plain

A note from the gateway.
--outer
Content-Type: multipart/report; report-type=delivery-status; boundary="inner"

--inner
Content-Type: text/plain

Your message could not be delivered.
--inner
Content-Type: message/delivery-status

Reporting-MTA: dns; gw.example.net

Final-Recipient: rfc822; full@example.org
Action: failed
Status: 5.0.0
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 552 5.2.2 <full@example.org>: Mailbox is full

--inner
Content-Type: text/rfc822-headers

{returned("full@example.org")}
--inner--
--outer--
""")

GLOBAL_DSN = crlf(f"""\
From: MAILER-DAEMON@mx.example.net
To: {VERP}
Subject: Delivery Status Notification (Failure)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=global-delivery-status; boundary="g"

--g
Content-Type: text/plain; charset=utf-8

Failed.
--g
Content-Type: message/global-delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: utf-8; {UTF8_RCPT}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 mailbox does not exist

--g
Content-Type: message/global-headers

{returned(UTF8_RCPT)}
--g--
""")

DELIVERED = crlf(f"""\
From: MAILER-DAEMON@mx.example.org
To: {VERP}
Subject: Successful Mail Delivery Report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="d"

--d
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; rcpt@example.org
Action: delivered
Status: 2.0.0
Remote-MTA: dns; store.example.org
Diagnostic-Code: smtp; 250 2.0.0 Ok: queued as 4F2A

Final-Recipient: rfc822; other@example.org
Action: relayed
Status: 2.0.0

--d--
""")

# Postfix 3.x text-only bounce (no delivery-status part), with a second recipient.
POSTFIX_TEXT = crlf(f"""\
From: MAILER-DAEMON@mail.example.net (Mail Delivery System)
To: {VERP}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied

This is the mail system at host mail.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<nobody@example.org>: host mx.example.org[192.0.2.7] said: 550 5.1.1
    <nobody@example.org>: Recipient address rejected: User unknown in virtual
    mailbox table (in reply to RCPT TO command)

<gone@nxdomain.example> (expanded from <alias@example.org>): Host or domain name not
    found. Name service error for name=nxdomain.example type=A: Host not found

--- Undelivered message follows ---
{returned("nobody@example.org")}
body
""")

EXIM = crlf(f"""\
From: Mail Delivery System <Mailer-Daemon@exim.example.net>
To: {VERP}
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: quota@example.org
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  quota@example.org
    host mx.example.org [192.0.2.9]
    SMTP error from remote mail server after RCPT TO:<quota@example.org>:
    452 4.2.2 The email account that you tried to reach is over quota

------ This is a copy of the message, including all the headers. ------

{returned("quota@example.org")}
body
""")

QMAIL = crlf(f"""\
From: MAILER-DAEMON@qmail.example.net
To: {VERP}
Subject: failure notice

Hi. This is the qmail-send program at qmail.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<unknown@example.org>:
192.0.2.11 does not like recipient.
Remote host said: 550 sorry, no mailbox here by that name. (#5.1.1)
Giving up on 192.0.2.11.

--- Below this line is a copy of the message.

{returned("unknown@example.org")}
body
""")

EXCHANGE = crlf(f"""\
From: postmaster@contoso.example
To: {VERP}
Subject: Undeliverable: Spring sale
MIME-Version: 1.0
Content-Type: text/plain; charset="us-ascii"

Delivery has failed to these recipients or groups:

rcpt@contoso.example<mailto:rcpt@contoso.example>
The email address you entered couldn't be found. Please check the recipient's email
address and try to resend the message.

Diagnostic information for administrators:

Generating server: EX01.contoso.example

rcpt@contoso.example
Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found'

Original message headers:

{returned("rcpt@contoso.example")}
""")

GMAIL = crlf(f"""\
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: {VERP}
Subject: Delivery Status Notification (Failure)

Delivery to the following recipient failed permanently:

     blocked@example.org

Technical details of permanent failure:
Google tried to deliver your message, but it was rejected by the server for the
recipient domain example.org by mx1.example.org. [192.0.2.20].

The error that the other server returned was:
550 5.7.1 Message rejected as spam by Content Filtering.

----- Original message -----

{returned("blocked@example.org")}
""")

SENDMAIL_TEXT = crlf(f"""\
From: Mail Delivery Subsystem <MAILER-DAEMON@sm.example.net>
To: {VERP}
Subject: Returned mail: see transcript for details

The original message was received at Tue, 24 Nov 2026 03:00:00 GMT
from localhost [127.0.0.1]

   ----- The following addresses had permanent fatal errors -----
<disabled@example.org>
    (reason: 550 5.2.1 Mailbox disabled for this recipient)

   ----- Transcript of session follows -----
... while talking to mx.example.org.:
>>> DATA
<<< 550 5.2.1 Mailbox disabled for this recipient
550 5.1.1 <disabled@example.org>... User unknown

   ----- Original message follows -----
{returned("disabled@example.org")}
""")

# A Japanese carrier's notice: ISO-2022-JP text, the address alone on a line.
JAPANESE = (
    b"From: Postmaster <postmaster@carrier.example.jp>\r\n"
    b"To: " + VERP.encode() + b"\r\n"
    b"Subject: " + Header("配信エラー", "iso-2022-jp").encode().encode() + b"\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=ISO-2022-JP\r\n\r\n"
    + "以下のアドレスへのメールは配送できませんでした。\r\n\r\n<keitai@carrier.example.jp>\r\n"
      "550 5.1.1 User unknown\r\n".encode("iso-2022-jp")
)

SES_BOUNCE = {
    "notificationType": "Bounce",
    "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
               "reportingMTA": "dns; a1-2.smtp-out.amazonses.com",
               "bouncedRecipients": [{"emailAddress": "ses@example.org", "action": "failed",
                                      "status": "5.1.1",
                                      "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]},
    "mail": {"source": VERP, "messageId": "0100-ses-id",
             "commonHeaders": {"subject": "Spring sale", "messageId": "<orig-1@shop.example>"}},
}
SES_COMPLAINT = {
    "notificationType": "Complaint",
    "complaint": {"complaintFeedbackType": "abuse", "userAgent": "Yahoo!-Mail-Feedback/2.0",
                  "complainedRecipients": [{"emailAddress": "angry@example.org"}]},
    "mail": {"source": VERP, "messageId": "0100-ses-id"},
}


def ses_mail(body: str) -> bytes:
    return crlf("From: no-reply@sns.amazonaws.com\nTo: ops@shop.example\n"
                "Subject: AWS Notification Message\nContent-Type: text/plain; charset=UTF-8\n\n"
                + body + "\n")


# RFC 5965 appendix B.2: a full report with the returned message.
ARF_RFC = crlf("""\
From: <abusedesk@example.com>
Date: Thu, 8 Mar 2005 17:40:36 EDT
Subject: FW: Earn money
To: <abuse@example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.  For more information
about this format please see http://www.mipassoc.org/arf/.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <somespammer@example.net>
Original-Rcpt-To: <user@example.com>
Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT
Reporting-MTA: dns; mail.example.com
Source-IP: 192.0.2.1
Authentication-Results: mail.example.com;
               spf=fail smtp.mail=somespammer@example.com
Reported-Domain: example.net
Reported-Uri: http://example.net/earn_money.html
Reported-Uri: mailto:user@example.com
Removal-Recipient: user@example.com

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: <somespammer@example.net>
Received: from mailserver.example.net (mailserver.example.net
        [192.0.2.1]) by example.com with ESMTP id M63d4137594e46;
        Thu, 08 Mar 2005 14:00:00 -0400
To: <Undisclosed Recipients>
Subject: Earn money
MIME-Version: 1.0
Content-type: text/plain
Message-ID: 8787KJKJ3K4J3K4J3K4J3.mail@example.net
Date: Thu, 02 Sep 2004 12:31:03 -0500

Spam Spam Spam
Spam Spam Spam
--part1_13d.2e68ed54_boundary--
""")

# A big mailbox provider's feedback loop: recipient redacted in the fields, our VERP address in
# the reported headers' Return-Path, headers only.
ARF_PROVIDER = crlf(f"""\
From: feedbackloop@fbl.bigmail.example
To: fbl@shop.example
Subject: FW: Spring sale
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="fbl"

--fbl
Content-Type: text/plain

This is a complaint about a message you sent.
--fbl
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: BigMail-Feedback/2.0
Version: 1
Original-Mail-From: <{VERP}>
Source-IP: 203.0.113.5
Reported-Domain: shop.example
Arrival-Date: Tue, 24 Nov 2026 03:00:05 +0000

--fbl
Content-Type: text/rfc822-headers

{returned("reader@bigmail.example")}
--fbl--
""")

VACATION = crlf(f"""\
From: Reader <reader@example.org>
To: {VERP}
Subject: Out of Office: Spring sale
Auto-Submitted: auto-replied
In-Reply-To: <orig-1@shop.example>

I am away until December 5th with no access to email. For urgent matters,
write to deputy@example.org.
""")
X_AUTOREPLY = crlf(f"""\
From: reader@example.org
To: {VERP}
Subject: Re: Spring sale
X-Autoreply: yes

Thanks, I will read your message when I am back.
""")
OOO_SUBJECT_ONLY = crlf(f"""\
From: reader@example.org
To: {VERP}
Subject: Automatic reply: Spring sale

I'm on leave.
""")
PLAIN_REPLY = crlf(f"""\
From: reader@example.org
To: {VERP}
Subject: Re: Spring sale

Do you ship to Belgium?
""")


# Shapes the first rules missed (bench/README.md, "Bounce parser"), written for the tests.

# Sendmail-style notice from an appliance: ">>> address <address>", the reply below.
SENDMAIL_ARROWS = crlf(f"""\
From: "MAILER-DAEMON" <MAILER-DAEMON@gw.example.net>
To: <{VERP}>
Subject: FAILURE NOTICE : Spring sale
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="AH1"

--AH1
Content-Type: text/plain

  ----- The following addresses had permanent fatal errors -----

>>> left@example.org <left@example.org>

  ----- Transcript of session follows -----
550 <left@example.org>: Recipient address rejected: User unknown in local recipient table

--AH1
Content-Type: message/rfc822

{returned("left@example.org")}
body
--AH1--
""")

# Old Exchange (IMS/IMC): "address on <date>", the words indented below.
EXCHANGE_OLD = crlf(f"""\
From: System Administrator <postmaster@old.example>
To: <{VERP}>
Subject: Undeliverable: Spring sale

Your message did not reach some or all of the intended recipients.

      Subject:  Spring sale
      Sent:     11/24/26 3:00 AM

The following recipient(s) could not be reached:

      olduser@old.example on 11/24/26 3:00 AM
            The recipient name is not recognized
            MSEXCH:IMS:OLD:SITE:SERVER 0 (000C05A6) Unknown Recipient
""")

# A bulleted list, and "was aborted" as the only word of failure.
BULLETED = crlf(f"""\
From: Mail Delivery System <Mail.Delivery.System@relay.example>
To: {VERP}
Subject: Delivery status notification

Delivery to the following recipients was aborted after 5.0 hour(s):

  * far@example.org

Routing: Could not find a gateway for far@example.org
""")

# "Delivery failed: address" on a line of its own.
DELIVERY_FAILED_LINE = crlf(f"""\
From: postmaster@ebd.example
To: {VERP}
Subject: Delivery failure

Your delivery to the following address has been failed.

Delivery failed: looped@example.org
192.0.2.1 failed after I sent the message.
Remote host said: 554 5.4.14 Hop count exceeded - possible mail loop
""")

# multipart/report whose boundary parameter is missing: the whole body is one text, with the
# delivery-status fields in it.
NO_BOUNDARY = crlf(f"""\
From: Mail Delivery Subsystem <MAILER-DAEMON@mail.example.edu>
To: <{VERP}>
Subject: Returned mail: Service unavailable
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;

   ----- The following addresses had permanent fatal errors -----
"|/usr/bin/procmail"

Reporting-MTA: dns; mail.example.edu

Final-Recipient: RFC822; piped@mail.example.edu
Action: failed
Status: 5.5.0

{returned("piped@example.edu")}
""")
