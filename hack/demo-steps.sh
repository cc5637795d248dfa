# Sourced by hack/demo.sh: the backup half on the embedded environment.
conn="$dir/connections.json"
db0_port=$(python3 -c "import json;print(json.load(open('$conn'))['mariadb'][0]['port'])")
db0_opt=$(python3 -c "import json;print(json.load(open('$conn'))['mariadb'][0]['optionFile'])")
s3_endpoint=$(python3 -c "import json;print(json.load(open('$conn'))['s3']['Endpoint'])")
s3_dir=$(python3 -c "import json;print(json.load(open('$conn'))['s3']['Dir'])")
pushgw=$(python3 -c "import json;print(json.load(open('$conn'))['pushgateway']['URL'])")

step "sample data in MariaDB db0 (127.0.0.1:$db0_port)"
mariadb --defaults-extra-file="$db0_opt" <<'SQL'
CREATE DATABASE shop CHARACTER SET utf8mb4;
USE shop;
CREATE TABLE shop.customers (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100), note TEXT);
INSERT INTO shop.customers (name, note) VALUES ('Ada', 'first 🐬'), ('Grace', 'O''Brien');
CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, customer INT, total DECIMAL(10,2), payload BLOB);
INSERT INTO shop.orders (customer, total, payload) SELECT 1 + seq % 2, seq * 1.5, RANDOM_BYTES(512) FROM seq_1_to_5000;
SQL

step "Secrets, Repository (S3 on versitygw), AppBinding, BackupConfiguration"
mkdir -p "$s3_dir/demo-backups"
python3 - "$conn" > "$dir/secrets.yaml" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
db, s3 = c['mariadb'][0], c['s3']
print(f"""apiVersion: v1
kind: Secret
metadata: {{name: db-auth, namespace: demo}}
stringData: {{username: "{db['user']}", password: "{db['password']}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: s3-creds, namespace: demo}}
stringData: {{RESTIC_PASSWORD: "demo-repo-password", AWS_ACCESS_KEY_ID: "{s3['AccessKey']}", AWS_SECRET_ACCESS_KEY: "{s3['SecretKey']}"}}""")
PY
kubectl create namespace demo
kubectl apply -f "$dir/secrets.yaml" >/dev/null
kubectl config set-context --current --namespace=demo >/dev/null
kubectl stash create repository s3-repo --backend s3 --endpoint "$s3_endpoint" --bucket demo-backups --prefix prod/mysql --secret s3-creds
kubectl stash create appbinding mysql --url "tcp(127.0.0.1:$db0_port)/" --secret db-auth --type mariadb --version 10.11
kubectl stash create backupconfig mysql-nightly --target appbinding/mysql --repository s3-repo \
  --schedule "0 2 * * *" --keep-last 7 --keep-daily 30 --prune --pushgateway "$pushgw" \
  --param "args=--databases shop"

step "starting the agent from its rendered Deployment (no kubelet here: a local process with the container's command, args and env, as its ServiceAccount)"
# Its own session, so stopping it never signals this script.
setsid bin/stash-env -dir "$dir" agent demo stash-agent-mysql > "$dir/agent-run.log" 2>&1 &
agent_pid=$!
trap 'kill $agent_pid 2>/dev/null; wait $agent_pid 2>/dev/null; cleanup' EXIT
for _ in $(seq 1 60); do grep -q "running" "$dir/agent-run.log" && break; sleep 1; done
cat "$dir/agent-run.log"

step "kubectl stash trigger mysql-nightly --wait"
kubectl stash trigger mysql-nightly --wait --timeout 5m

step "kubectl get backupsessions,repositories"
kubectl get backupsessions,repositories

step "kubectl stash snapshots s3-repo (restic runs here with the Repository's credentials)"
kubectl stash snapshots s3-repo

step "restore into a second MariaDB (db1): kubectl stash restore --wait"
db1_port=$(python3 -c "import json;print(json.load(open('$conn'))['mariadb'][1]['port'])")
db1_opt=$(python3 -c "import json;print(json.load(open('$conn'))['mariadb'][1]['optionFile'])")
python3 - "$conn" > "$dir/secrets-new.yaml" <<'PY'
import json, sys
db = json.load(open(sys.argv[1]))['mariadb'][1]
print(f"""apiVersion: v1
kind: Secret
metadata: {{name: db-new-auth, namespace: demo}}
stringData: {{username: "{db['user']}", password: "{db['password']}"}}""")
PY
kubectl apply -f "$dir/secrets-new.yaml" >/dev/null
kubectl stash create appbinding mysql-new --url "tcp(127.0.0.1:$db1_port)/" --secret db-new-auth --type mariadb --version 10.11
# restore renders the new database's agent; start it once its Deployment exists.
kubectl stash restore --repository s3-repo --target appbinding/mysql-new --snapshot latest --wait --timeout 5m &
restore_pid=$!
for _ in $(seq 1 60); do kubectl get deployment stash-agent-mysql-new >/dev/null 2>&1 && break; sleep 1; done
setsid bin/stash-env -dir "$dir" agent demo stash-agent-mysql-new > "$dir/agent-new-run.log" 2>&1 &
agent_new_pid=$!
trap 'kill $agent_pid $agent_new_pid 2>/dev/null; wait $agent_pid $agent_new_pid 2>/dev/null; cleanup' EXIT
wait $restore_pid

step "kubectl get restoresessions"
kubectl get restoresessions

step "table by table: CHECKSUM TABLE on the source (db0) and the restored copy (db1)"
printf '%-22s %-14s %-14s %s\n' TABLE SOURCE RESTORED MATCH
for tbl in $(mariadb --defaults-extra-file="$db0_opt" -N -e "SELECT CONCAT(table_schema,'.',table_name) FROM information_schema.tables WHERE table_schema='shop' AND table_type='BASE TABLE' ORDER BY 1"); do
  a=$(mariadb --defaults-extra-file="$db0_opt" -N -e "CHECKSUM TABLE $tbl EXTENDED" | awk '{print $2}')
  b=$(mariadb --defaults-extra-file="$db1_opt" -N -e "CHECKSUM TABLE $tbl EXTENDED" | awk '{print $2}')
  m=yes; [ "$a" = "$b" ] || m=NO
  printf '%-22s %-14s %-14s %s\n' "$tbl" "$a" "$b" "$m"
  [ "$m" = yes ] || { echo "restored table $tbl differs" >&2; exit 1; }
done
