# Sourced by hack/demo.sh when the real node is up: MariaDB and the agent
# run as Pods, in a namespace that enforces the restricted standard.
conn="$dir/connections.json"
s3_endpoint=$(python3 -c "import json;print(json.load(open('$conn'))['s3']['Endpoint'])")
s3_access=$(python3 -c "import json;print(json.load(open('$conn'))['s3']['AccessKey'])")
s3_secret=$(python3 -c "import json;print(json.load(open('$conn'))['s3']['SecretKey'])")
pushgw=$(python3 -c "import json;print(json.load(open('$conn'))['pushgateway']['URL'])")

mariadb_pod() { # NAME: a restricted MariaDB Pod from the image `make image` built, and its Service
  cat <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: demo, labels: {app: $1}}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 999, runAsGroup: 999, fsGroup: 999, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: mariadb
    image: localhost/stash-test/mariadb:10.11
    imagePullPolicy: IfNotPresent
    env: [{name: MARIADB_ROOT_PASSWORD, valueFrom: {secretKeyRef: {name: $1-root, key: password}}}]
    ports: [{name: mysql, containerPort: 3306}]
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
    readinessProbe: {tcpSocket: {port: mysql}, periodSeconds: 1}
    volumeMounts: [{name: data, mountPath: /var/lib/mysql}, {name: run, mountPath: /run/mysqld}]
  volumes: [{name: data, emptyDir: {}}, {name: run, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: $1, namespace: demo}
spec: {selector: {app: $1}, ports: [{name: mysql, port: 3306, targetPort: mysql}]}
YAML
}
sql() { # POD: runs stdin as root in the Pod; the password stays in the Pod's environment
  kubectl exec -i -n demo "$1" -c mariadb -- sh -c 'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" exec mariadb -uroot -N --batch'
}

step "a namespace that enforces the restricted Pod Security Standard, and two MariaDB Pods"
kubectl create namespace demo
kubectl label namespace demo pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest >/dev/null
kubectl config set-context --current --namespace=demo >/dev/null
rootpw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
for db in mariadb mariadb-new; do
  kubectl create secret generic "$db-root" --from-literal=password="$rootpw" >/dev/null
  mariadb_pod "$db" | kubectl apply -f - >/dev/null
done
kubectl wait --for=condition=Ready pod/mariadb pod/mariadb-new --timeout=3m
kubectl get pods -o wide

step "sample data in the mariadb Pod"
sql mariadb <<'SQL'
CREATE DATABASE shop CHARACTER SET utf8mb4;
USE shop;
CREATE TABLE shop.customers (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100), note TEXT);
INSERT INTO shop.customers (name, note) VALUES ('Ada', 'first 🐬'), ('Grace', 'O''Brien');
CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, customer INT, total DECIMAL(10,2), payload BLOB);
INSERT INTO shop.orders (customer, total, payload) SELECT 1 + seq % 2, seq * 1.5, RANDOM_BYTES(512) FROM seq_1_to_5000;
SQL

step "Secrets, Repository (S3 on the node), AppBinding through the Service, BackupConfiguration"
kubectl create secret generic db-auth --from-literal=username=root --from-literal=password="$rootpw" >/dev/null
kubectl create secret generic db-new-auth --from-literal=username=root --from-literal=password="$rootpw" >/dev/null
# The S3 keys go in from a file, never on a command line.
printf 'RESTIC_PASSWORD=demo-repo-password\nAWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n' "$s3_access" "$s3_secret" > "$dir/s3.env"
kubectl create secret generic s3-creds --from-env-file="$dir/s3.env" >/dev/null
kubectl stash create repository s3-repo --backend s3 --endpoint "$s3_endpoint" --bucket demo-backups --prefix prod/mysql --secret s3-creds
kubectl stash create appbinding mysql --service mariadb:3306 --secret db-auth --type mariadb --version 10.11
kubectl stash create backupconfig mysql-nightly --target appbinding/mysql --repository s3-repo \
  --schedule "0 2 * * *" --keep-last 7 --keep-daily 30 --prune --pushgateway "$pushgw" \
  --param "args=--databases shop"

step "the agent runs as a Pod from its rendered Deployment and the built image"
kubectl rollout status deployment/stash-agent-mysql --timeout=3m
kubectl get pods -o wide

step "kubectl stash trigger mysql-nightly --wait"
kubectl stash trigger mysql-nightly --wait --timeout 5m

step "kubectl get pods,backupsessions,repositories"
kubectl get pods,backupsessions,repositories

step "restore into the second MariaDB Pod: kubectl stash restore --wait"
kubectl stash create appbinding mysql-new --service mariadb-new:3306 --secret db-new-auth --type mariadb --version 10.11
kubectl stash restore --repository s3-repo --target appbinding/mysql-new --snapshot latest --wait --timeout 5m

step "kubectl get pods,restoresessions"
kubectl get pods,restoresessions

step "table by table: CHECKSUM TABLE on the source and the restored copy"
printf '%-22s %-14s %-14s %s\n' TABLE SOURCE RESTORED MATCH
for tbl in shop.customers shop.orders; do
  a=$(echo "CHECKSUM TABLE $tbl EXTENDED" | sql mariadb | awk '{print $2}')
  b=$(echo "CHECKSUM TABLE $tbl EXTENDED" | sql mariadb-new | awk '{print $2}')
  m=yes; [ "$a" = "$b" ] || m=NO
  printf '%-22s %-14s %-14s %s\n' "$tbl" "$a" "$b" "$m"
  [ "$m" = yes ] || { echo "restored table $tbl differs" >&2; exit 1; }
done
