"""The Ansible collection in ansible/, run by ansible-playbook against simulated hosts."""
