# shellcheck shell=bash
# Finds or starts the PostgreSQL and MariaDB servers that the warehouse tests
# run against, says plainly what it did, and exports
#   RETL_TEST_POSTGRES_URL  (e.g. postgres://postgres@127.0.0.1:5432/test)
#   RETL_TEST_MYSQL_URL     (e.g. mysql://root@127.0.0.1:3306/test)
#
# Source it (scripts/test does): `. scripts/test-databases.sh`. For each
# server, in order:
#   1. the URL already in the environment, if it answers;
#   2. the machine's server (PostgreSQL on 127.0.0.1:5432, trust auth;
#      MariaDB on 127.0.0.1:3306, root without password), if it answers;
#      the database `test` is created there if it is missing;
#   3. a throwaway server in /tmp/retl-test-db (reused while it runs), from the
#      installed binaries; when they are missing and we are root, they are
#      installed with apt-get first.
# It returns non-zero, with a message, when none of that works.
# Set RETL_TEST_DATABASES_THROWAWAY=1 to skip 1 and 2 (to try step 3).

_retl_db_dir=/tmp/retl-test-db
_retl_pg_port=55432
_retl_my_port=53306

_retl_say() { echo "test-databases: $*"; }

_retl_pg_ok() { psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1; }
_retl_my_ok() {
  # mysql://user[:pass]@host:port/db
  local rest=${1#mysql://} auth host port db
  auth=${rest%%@*}; rest=${rest#*@}
  host=${rest%%:*}; rest=${rest#*:}
  port=${rest%%/*}; db=${rest#*/}
  local pass=()
  case $auth in *:*) pass=("-p${auth#*:}") ;; esac
  mysql --protocol=TCP -h "$host" -P "$port" -u "${auth%%:*}" "${pass[@]}" "$db" -e 'SELECT 1' >/dev/null 2>&1
}

_retl_apt_install() {
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    _retl_say "$1 is not installed, and this is not root with apt-get: install $2 and run again"
    return 1
  fi
  _retl_say "$1 is not installed: installing $2 with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null 2>&1; } ||
    { _retl_say "apt-get install $2 failed"; return 1; }
}

# Runs a command as the given user when we are root (the servers refuse root).
_retl_as() {
  local user=$1; shift
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

_retl_postgres() {
  local url=${RETL_TEST_POSTGRES_URL:-}
  if [ -z "${RETL_TEST_DATABASES_THROWAWAY:-}" ]; then
    if [ -n "$url" ] && _retl_pg_ok "$url"; then
      _retl_say "PostgreSQL: using RETL_TEST_POSTGRES_URL from the environment"; return 0
    fi
    if command -v psql >/dev/null && _retl_pg_ok postgres://postgres@127.0.0.1:5432/postgres; then
      if ! _retl_pg_ok postgres://postgres@127.0.0.1:5432/test; then
        psql postgres://postgres@127.0.0.1:5432/postgres -qc 'CREATE DATABASE test' >/dev/null && _retl_say "PostgreSQL: created database test"
      fi
      export RETL_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test
      _retl_say "PostgreSQL: using the running server on 127.0.0.1:5432"; return 0
    fi
  fi
  export RETL_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:${_retl_pg_port}/test"
  if command -v psql >/dev/null && _retl_pg_ok "$RETL_TEST_POSTGRES_URL"; then
    _retl_say "PostgreSQL: reusing the throwaway server on port ${_retl_pg_port} ($_retl_db_dir/pg)"; return 0
  fi
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$bin" ] && ! command -v pg_ctl >/dev/null; then
    _retl_apt_install PostgreSQL postgresql || return 1
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  [ -n "$bin" ] || bin=$(dirname "$(command -v pg_ctl)")
  local user; user=$(id -un); [ "$(id -u)" -eq 0 ] && user=postgres
  _retl_say "PostgreSQL: no server answers; starting a throwaway one ($bin) on port ${_retl_pg_port} in $_retl_db_dir/pg"
  rm -rf "$_retl_db_dir/pg" && mkdir -p "$_retl_db_dir/pg" && chmod 755 "$_retl_db_dir" && chown "$user" "$_retl_db_dir/pg"
  _retl_as "$user" "$bin/initdb" -D "$_retl_db_dir/pg/data" -U postgres -A trust -E UTF8 >"$_retl_db_dir/pg/initdb.log" 2>&1 ||
    { _retl_say "initdb failed, see $_retl_db_dir/pg/initdb.log"; return 1; }
  _retl_as "$user" "$bin/pg_ctl" -D "$_retl_db_dir/pg/data" -l "$_retl_db_dir/pg/server.log" -w \
    -o "-p ${_retl_pg_port} -k $_retl_db_dir/pg -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null ||
    { _retl_say "the throwaway PostgreSQL did not start, see $_retl_db_dir/pg/server.log"; return 1; }
  "$bin/psql" "postgres://postgres@127.0.0.1:${_retl_pg_port}/postgres" -qc 'CREATE DATABASE test' >/dev/null ||
    { _retl_say "cannot create database test in the throwaway PostgreSQL"; return 1; }
  _retl_say "PostgreSQL: started (stop it with: $bin/pg_ctl -D $_retl_db_dir/pg/data stop)"
}

_retl_mysql() {
  local url=${RETL_TEST_MYSQL_URL:-}
  if [ -z "${RETL_TEST_DATABASES_THROWAWAY:-}" ]; then
    if [ -n "$url" ] && command -v mysql >/dev/null && _retl_my_ok "$url"; then
      _retl_say "MariaDB/MySQL: using RETL_TEST_MYSQL_URL from the environment"; return 0
    fi
    if command -v mysql >/dev/null && mysql --protocol=TCP -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1; then
      mysql --protocol=TCP -h 127.0.0.1 -P 3306 -u root -e 'CREATE DATABASE IF NOT EXISTS test' >/dev/null 2>&1 || true
      export RETL_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test
      _retl_say "MariaDB/MySQL: using the running server on 127.0.0.1:3306"; return 0
    fi
  fi
  export RETL_TEST_MYSQL_URL="mysql://root@127.0.0.1:${_retl_my_port}/test"
  if command -v mysql >/dev/null && _retl_my_ok "$RETL_TEST_MYSQL_URL"; then
    _retl_say "MariaDB: reusing the throwaway server on port ${_retl_my_port} ($_retl_db_dir/my)"; return 0
  fi
  if ! command -v mariadbd >/dev/null && ! [ -x /usr/sbin/mariadbd ]; then
    _retl_apt_install MariaDB mariadb-server || return 1
  fi
  local server=/usr/sbin/mariadbd; [ -x "$server" ] || server=$(command -v mariadbd)
  local user; user=$(id -un); [ "$(id -u)" -eq 0 ] && user=mysql
  _retl_say "MariaDB: no server answers; starting a throwaway one on port ${_retl_my_port} in $_retl_db_dir/my"
  rm -rf "$_retl_db_dir/my" && mkdir -p "$_retl_db_dir/my" && chmod 755 "$_retl_db_dir" && chown "$user" "$_retl_db_dir/my"
  mariadb-install-db --no-defaults --user="$user" --datadir="$_retl_db_dir/my/data" \
    --auth-root-authentication-method=normal >"$_retl_db_dir/my/install.log" 2>&1 ||
    { _retl_say "mariadb-install-db failed, see $_retl_db_dir/my/install.log"; return 1; }
  (_retl_as "$user" "$server" --no-defaults --datadir="$_retl_db_dir/my/data" --port="${_retl_my_port}" \
    --bind-address=127.0.0.1 --socket="$_retl_db_dir/my/mysqld.sock" --pid-file="$_retl_db_dir/my/mysqld.pid" \
    --skip-log-bin --innodb-flush-log-at-trx-commit=0 >"$_retl_db_dir/my/server.log" 2>&1 &)
  local i
  for i in $(seq 1 60); do
    mysql --protocol=TCP -h 127.0.0.1 -P "${_retl_my_port}" -u root -e 'CREATE DATABASE IF NOT EXISTS test' >/dev/null 2>&1 && break
    sleep 0.5
  done
  _retl_my_ok "$RETL_TEST_MYSQL_URL" || { _retl_say "the throwaway MariaDB did not start, see $_retl_db_dir/my/server.log"; return 1; }
  _retl_say "MariaDB: started (stop it with: kill \$(cat $_retl_db_dir/my/mysqld.pid))"
}

_retl_databases() {
  if ! command -v psql >/dev/null; then
    _retl_apt_install "the PostgreSQL client" postgresql-client || return 1
  fi
  if ! command -v mysql >/dev/null; then
    _retl_apt_install "the MariaDB client" mariadb-client || return 1
  fi
  _retl_postgres || { _retl_say "no PostgreSQL for the tests: the postgres suites will fail and say so"; return 1; }
  _retl_mysql || { _retl_say "no MariaDB/MySQL for the tests: the mysql suites will fail and say so"; return 1; }
  _retl_say "RETL_TEST_POSTGRES_URL=$RETL_TEST_POSTGRES_URL"
  _retl_say "RETL_TEST_MYSQL_URL=$RETL_TEST_MYSQL_URL"
}

_retl_databases
