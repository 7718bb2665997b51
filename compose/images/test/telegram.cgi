#!/bin/sh
# A fake Telegram Bot API for the deployment test, served by busybox httpd as a CGI script:
# WATCHDOG_TELEGRAM_API_URL=http://fake-telegram:8080/cgi-bin/telegram makes teloxide call
# /cgi-bin/telegram/bot<token>/SendMessage, which arrives here with PATH_INFO=/bot<token>/SendMessage.
# Each call is appended to /tmp/telegram.log (one line: method, path, body) and answered with a
# Message teloxide can parse. The test reads the log with `docker exec ... cat`.
body="$(head -c "${CONTENT_LENGTH:-0}")"
printf '%s %s %s\n' "$REQUEST_METHOD" "$PATH_INFO" "$body" | tr -d '\r' >>/tmp/telegram.log
printf 'Status: 200 OK\r\nContent-Type: application/json\r\n\r\n'
printf '{"ok":true,"result":{"message_id":1,"from":{"id":123456789,"is_bot":true,"first_name":"Vigil","username":"vigil_test_bot"},"chat":{"id":42,"type":"private","first_name":"Vigil"},"date":1700000000,"text":"ok"}}'
